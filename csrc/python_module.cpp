// Makes the shared library importable as a Python module (`import squeezetime._C`): importing it runs the
// static TORCH_LIBRARY registrations. No Python bindings: the operators are called via torch.ops.squeezetime.
#include <Python.h>

#ifndef SQUEEZETIME_MODULE_NAME
#define SQUEEZETIME_MODULE_NAME _C
#endif
#define ST_CAT(a, b) a##b
#define ST_INIT(name) ST_CAT(PyInit_, name)
#define ST_STR2(x) #x
#define ST_STR(x) ST_STR2(x)

extern "C" PyMODINIT_FUNC ST_INIT(SQUEEZETIME_MODULE_NAME)(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, ST_STR(SQUEEZETIME_MODULE_NAME),
                                   "squeezetime fused operators (torch.ops.squeezetime)", -1, nullptr};
  return PyModule_Create(&def);
}
