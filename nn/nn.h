// kiln::nn in one include: modules, layers, recurrent layers, optimizers, clipping, schedules,
// weight averaging.
#pragma once

#include "nn/averaging.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "nn/rnn.h"
