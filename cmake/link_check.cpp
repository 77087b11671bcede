// The program of a layer's link check (CMakeLists.txt, kiln_layer): it links the whole of one
// layer's archive with only the layers below it, so a symbol a layer uses but a higher layer
// defines is an undefined reference at build time. It is never run.
int main() { return 0; }
