/* The checks and the fusion around a /rank request's graphs, one C pass each (service._speedups).
 *
 * scores_within   every objective column finite, binary ones within [0, 1]: the test
 *                 service.scoring.registry.LoadedModel.check_outputs makes with numpy.
 * weighted_sum    sum_k weight_k * column_k in term order, the float64 operations
 *                 service.contracts.fusion.fuse performs for a weighted sum (a product, then an add
 *                 into the running total, each rounded), so the result is bit for bit numpy's.
 * indices_within  every cell of an (N, C) int64 block within [0, bound[c]): the test
 *                 service.scoring.assembly.FeatureAssembler._check_indices makes with numpy.
 * best_first      the positions of the k best scores, higher score first and, among equal scores,
 *                 earlier position first: service.scoring.topk.top_k's order, by a stable radix
 *                 sort of the scores' bits instead of numpy's partition and two-key lexsort.
 *
 * Each only compares or does the IEEE operations numpy does in the same order (the extension is
 * built with -ffp-contract=off, so no multiply-add is fused). Each declines (returns None) a buffer
 * of another kind or shape, and weighted_sum a result that is not finite, and the numpy path decides
 * and writes the error message. tests/service/contracts/test_speedups.py holds them to numpy.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#include "_buffers.h"
#include "_scores.h"

/* A C-contiguous int64 buffer of ``ndim`` dimensions, or 0 with no view held. */
static int int64s(PyObject *object, Py_buffer *view, int ndim) {
    if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return 0;
    }
    if (view->ndim == ndim && view->itemsize == 8 && view->format != NULL &&
        (strcmp(view->format, "l") == 0 || strcmp(view->format, "q") == 0))
        return 1;
    PyBuffer_Release(view);
    return 0;
}

static inline double at(const Py_buffer *view, Py_ssize_t i) {
    return *(const double *)((const char *)view->buf + i * view->strides[0]);
}

/* Views on every column of a list, all of ``n`` values (n < 0: the first one's); NULL and nothing
 * held when one is not a 1-d float64 buffer of that length (or, with an exception, out of memory). */
static Py_buffer *column_views(PyObject *columns, Py_ssize_t *n) {
    Py_ssize_t k = PyList_GET_SIZE(columns);
    Py_buffer *views = PyMem_Calloc((size_t)k + 1, sizeof(Py_buffer));
    if (views == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        if (!float64_column(PyList_GET_ITEM(columns, j), &views[j]) ||
            (*n >= 0 && views[j].shape[0] != *n)) {
            for (Py_ssize_t h = 0; h < j + (views[j].obj != NULL); h++) PyBuffer_Release(&views[h]);
            PyMem_Free(views);
            return NULL;
        }
        *n = views[j].shape[0];
    }
    return views;
}

static void release_views(Py_buffer *views, Py_ssize_t k) {
    for (Py_ssize_t j = 0; j < k; j++) PyBuffer_Release(&views[j]);
    PyMem_Free(views);
}

PyObject *scores_within(PyObject *module, PyObject *args) {
    PyObject *columns, *unit;
    (void)module;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &columns, &PyList_Type, &unit)) return NULL;
    Py_ssize_t k = PyList_GET_SIZE(columns), n = -1;
    if (PyList_GET_SIZE(unit) != k) Py_RETURN_NONE;
    Py_buffer *views = column_views(columns, &n);
    if (views == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    int within = 1;
    for (Py_ssize_t j = 0; within && j < k; j++) {
        int bounded = PyObject_IsTrue(PyList_GET_ITEM(unit, j));
        if (bounded < 0) {
            release_views(views, k);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            double x = at(&views[j], i);
            /* NaN fails both comparisons of the unit test and isfinite */
            if (bounded ? !(x >= 0.0 && x <= 1.0) : !isfinite(x)) {
                within = 0;
                break;
            }
        }
    }
    release_views(views, k);
    return PyBool_FromLong(within);
}

PyObject *weighted_sum(PyObject *module, PyObject *args) {
    PyObject *columns, *weights;
    (void)module;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &columns, &PyList_Type, &weights))
        return NULL;
    Py_ssize_t k = PyList_GET_SIZE(columns), n = -1;
    if (k == 0 || PyList_GET_SIZE(weights) != k) Py_RETURN_NONE;
    double *weight = PyMem_Malloc((size_t)k * sizeof(double));
    if (weight == NULL) return PyErr_NoMemory();
    for (Py_ssize_t j = 0; j < k; j++) {
        PyObject *w = PyList_GET_ITEM(weights, j);
        if (!PyFloat_CheckExact(w)) { /* what numpy multiplies by a Python float, nothing else */
            PyMem_Free(weight);
            Py_RETURN_NONE;
        }
        weight[j] = PyFloat_AS_DOUBLE(w);
    }
    Py_buffer *views = column_views(columns, &n);
    if (views == NULL) {
        PyMem_Free(weight);
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    PyObject *out = PyByteArray_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(double));
    if (out == NULL) {
        release_views(views, k);
        PyMem_Free(weight);
        return NULL;
    }
    double *total = (double *)PyByteArray_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) total[i] = 0.0;
    for (Py_ssize_t j = 0; j < k; j++) { /* term by term, as numpy's ``total += w * g`` */
        const double w = weight[j];
        if (views[j].strides[0] == sizeof(double)) {
            const double *g = views[j].buf;
            for (Py_ssize_t i = 0; i < n; i++) total[i] = total[i] + w * g[i];
        } else {
            for (Py_ssize_t i = 0; i < n; i++) total[i] = total[i] + w * at(&views[j], i);
        }
    }
    release_views(views, k);
    PyMem_Free(weight);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!isfinite(total[i])) { /* numpy's path raises, naming the cause */
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
    }
    return out;
}

PyObject *indices_within(PyObject *module, PyObject *args) {
    PyObject *block_object, *bounds_object;
    (void)module;
    if (!PyArg_ParseTuple(args, "OO", &block_object, &bounds_object)) return NULL;
    Py_buffer block = {0}, bounds = {0};
    if (!int64s(block_object, &block, 2)) Py_RETURN_NONE;
    if (!int64s(bounds_object, &bounds, 1) || bounds.shape[0] != block.shape[1]) {
        if (bounds.obj != NULL) PyBuffer_Release(&bounds);
        PyBuffer_Release(&block);
        Py_RETURN_NONE;
    }
    const long long *cell = block.buf, *bound = bounds.buf;
    Py_ssize_t rows = block.shape[0], width = block.shape[1];
    int within = 1, usable = 1;
    for (Py_ssize_t c = 0; c < width; c++) usable = usable && bound[c] >= 0;
    if (!usable) { /* a negative bound would compare as a huge one below */
        PyBuffer_Release(&bounds);
        PyBuffer_Release(&block);
        Py_RETURN_NONE;
    }
    for (Py_ssize_t r = 0; within && r < rows; r++, cell += width) {
        for (Py_ssize_t c = 0; c < width; c++) {
            /* one unsigned comparison: a negative index wraps past any bound */
            if ((unsigned long long)cell[c] >= (unsigned long long)bound[c]) {
                within = 0;
                break;
            }
        }
    }
    PyBuffer_Release(&bounds);
    PyBuffer_Release(&block);
    return PyBool_FromLong(within);
}

/* A float64's bits as an unsigned key whose order is the numbers' order read backwards (the highest
 * number gets the smallest key); -0.0 and 0.0 get one key, as they compare equal. */
static inline unsigned long long descending_key(double x) {
    unsigned long long bits;
    x = x + 0.0; /* -0.0 + 0.0 is 0.0 (round to nearest); every other number is itself */
    memcpy(&bits, &x, sizeof bits);
    /* ascending: a negative number's bits all flipped, a positive one's sign bit set */
    unsigned long long ascending = (bits >> 63) ? ~bits : bits | (1ULL << 63);
    return ~ascending;
}

PyObject *best_first(PyObject *module, PyObject *args) {
    PyObject *scores;
    Py_ssize_t count;
    (void)module;
    if (!PyArg_ParseTuple(args, "On", &scores, &count)) return NULL;
    Py_buffer view = {0};
    if (!float64_column(scores, &view)) Py_RETURN_NONE;
    Py_ssize_t n = view.shape[0];
    if (count < 0 || count > n) count = n;
    unsigned long long *keys = PyMem_Malloc(2 * (size_t)n * sizeof *keys + 1);
    Py_ssize_t *order = PyMem_Malloc(2 * (size_t)n * sizeof *order + 1);
    if (keys == NULL || order == NULL) {
        PyMem_Free(keys);
        PyMem_Free(order);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    /* one pass: the keys, and how many keys have each value of each of their 8 bytes */
    Py_ssize_t counts[8][256];
    memset(counts, 0, sizeof counts);
    int nan = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double x = at(&view, i);
        nan |= isnan(x);
        unsigned long long key = descending_key(x);
        keys[i] = key;
        order[i] = i;
        for (int b = 0; b < 8; b++) counts[b][(key >> (8 * b)) & 0xFF]++;
    }
    PyBuffer_Release(&view);
    if (nan) { /* no order for NaN: the numpy path decides */
        PyMem_Free(keys);
        PyMem_Free(order);
        Py_RETURN_NONE;
    }
    /* least significant byte first, each pass stable: equal keys keep their input order */
    unsigned long long *key_from = keys, *key_to = keys + n;
    Py_ssize_t *from = order, *to = order + n;
    for (int b = 0; b < 8; b++) {
        Py_ssize_t *count_b = counts[b];
        if (n == 0 || count_b[(key_from[0] >> (8 * b)) & 0xFF] == n) continue; /* one value: as is */
        Py_ssize_t start[256], total = 0;
        for (int v = 0; v < 256; v++) {
            start[v] = total;
            total += count_b[v];
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t slot = start[(key_from[i] >> (8 * b)) & 0xFF]++;
            key_to[slot] = key_from[i];
            to[slot] = from[i];
        }
        unsigned long long *swap_keys = key_from;
        key_from = key_to;
        key_to = swap_keys;
        Py_ssize_t *swap = from;
        from = to;
        to = swap;
    }
    PyObject *out =
        PyByteArray_FromStringAndSize((const char *)from, count * (Py_ssize_t)sizeof *from);
    PyMem_Free(keys);
    PyMem_Free(order);
    return out;
}
