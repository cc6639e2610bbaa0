/* service/_rank_json.c's entry point, a function of the service._speedups module. */
#ifndef MTRANK_RANK_JSON_H
#define MTRANK_RANK_JSON_H
#include <Python.h>

#define PARSE_RANK_BODY_DOC                                                                        \
    "parse_rank_body(body: bytes) -> tuple[dict, tuple[list[str], dict[str, list], bool, int]] "  \
    "| None\n\n"                                                                                   \
    "The body's members other than candidates as plain values, and the candidates as (ids, "       \
    "{name: column}, columnar?, object keys). None when the msgspec path must decide (see "        \
    "service/_rank_json.c)."

PyObject *parse_rank_body(PyObject *module, PyObject *args);

#endif
