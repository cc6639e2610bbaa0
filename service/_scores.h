/* service/_scores.c's functions, part of the service._speedups module. */
#ifndef MTRANK_SCORES_H
#define MTRANK_SCORES_H
#include <Python.h>

#define SCORES_WITHIN_DOC                                                                          \
    "scores_within(columns: list, unit: list[bool], /) -> bool | None\n\n"                         \
    "Whether every value of every column is finite and, where ``unit[k]``, within [0, 1]. None "   \
    "when a column is not a 1-d float64 buffer or the columns differ in length."
#define WEIGHTED_SUM_DOC                                                                           \
    "weighted_sum(columns: list, weights: list[float], /) -> bytearray | None\n\n"                 \
    "float64 ``sum(weights[k] * columns[k])`` in native byte order, added term by term from "      \
    "zeros as numpy does. None when a column is not a 1-d float64 buffer, the lengths differ, a "  \
    "weight is not a float, or a result is not finite."
#define INDICES_WITHIN_DOC                                                                         \
    "indices_within(block, bounds, /) -> bool | None\n\n"                                          \
    "Whether every cell of a C-contiguous (N, C) int64 block lies in [0, bounds[c]). None when "   \
    "a buffer is not of that kind, the widths differ, or a bound is negative."

#define BEST_FIRST_DOC                                                                             \
    "best_first(scores, k, /) -> bytearray | None\n\n"                                            \
    "The positions (native intp) of the ``k`` highest of a 1-d float64 buffer (all of them when "  \
    "``k`` is negative or past its length), highest first, equal scores in input order; -0.0 "     \
    "equals 0.0. None when the buffer is not of that kind or holds a NaN."

PyObject *scores_within(PyObject *module, PyObject *args);
PyObject *weighted_sum(PyObject *module, PyObject *args);
PyObject *indices_within(PyObject *module, PyObject *args);
PyObject *best_first(PyObject *module, PyObject *args);

#endif
