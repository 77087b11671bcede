// safetensors checkpoints: placeholder, being written.
#pragma once
