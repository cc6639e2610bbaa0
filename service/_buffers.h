/* Buffer checks shared by the C files of service._speedups. */
#ifndef MTRANK_BUFFERS_H
#define MTRANK_BUFFERS_H
#include <Python.h>
#include <string.h>

/* A view on a 1-d float64 buffer (any stride): 1; or 0 with no view held and no exception set, for
 * an object of another kind, which the caller leaves to its numpy path. */
static inline int float64_column(PyObject *object, Py_buffer *view) {
    if (PyObject_GetBuffer(object, view, PyBUF_STRIDES | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return 0;
    }
    if (view->ndim == 1 && view->itemsize == 8 && view->format != NULL &&
        strcmp(view->format, "d") == 0)
        return 1;
    PyBuffer_Release(view);
    return 0;
}

#endif
