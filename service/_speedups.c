/* service._speedups: hot loops of /rank in C, each with a pure-Python twin it must equal.
 *
 * encode_ids    a categorical column (a list of str / int ids) -> int64 codes, as
 *               service.contracts.transform._Encoder.encode computes them (vocabulary lookup of the
 *               canonical id, or 1 + FNV-1a 64 of its UTF-8 bytes modulo the buckets).
 * write_items   the /rank "items" array from the ids, their order and the score columns orjson
 *               already wrote, as service.rank_items._tokens_json interleaves them, with the rest
 *               of the answer around it.
 * rows_to_columns  decoded /rank candidate rows -> ids and one list per feature, as
 *               service.rank_body._rows turns them.
 * encode_sequences  a sequence column (lists of ids) -> the (rows, length) int64 codes
 *               service.contracts.transform.FeatureTransform._sequence computes.
 * plain_floats  a numeric column of exact ints and floats, all finite -> float64, as
 *               service.contracts.coercion.numbers_of converts it (and clipped, as the pipeline
 *               clips it).
 * scale_floats  float64 values -> standardised float32, as service.contracts.transform._scale
 *               computes them (log1p, where the pipeline has it, stays numpy's, between the two).
 * bucket_counts  score columns -> histogram bucket counts and sums, as
 *               service.metrics.BulkHistogram.observe_many counts them (np.searchsorted + bincount).
 * parse_rank_body  a /rank body's JSON -> its members, the list form's candidates as columns
 *               (in _rank_json.c), as service.rank_body's msgspec path decodes it.
 * scores_within, weighted_sum, indices_within  the checks and the weighted-sum fusion around the
 *               graphs (in _scores.c), as numpy computes them.
 * best_first    the answer's order (in _scores.c), as service.scoring.topk.top_k's numpy path.
 *
 * Each declines (returns None) whatever it is not sure of, and the Python code takes over: an
 * element that is not an exact str or an int within int64 (None, bool, float, a list), a string
 * with a lone surrogate or a trailing NUL character, a token stream that is not what orjson writes,
 * a number that is missing, not finite or of another type.
 * tests/service/contracts/test_speedups.py checks each against its Python twin.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "_buffers.h"
#include "_fnv1a.h"
#include "_rank_json.h"
#include "_scores.h"

/* ``magnitude`` in decimal digits into ``out`` (at least 20 bytes); their count. snprintf's format
 * parsing costs more than the hash of the digits or the copy of a token. */
static Py_ssize_t write_digits(unsigned long long magnitude, char *out) {
    char reversed[20];
    Py_ssize_t count = 0, size = 0;
    do {
        reversed[count++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude != 0);
    while (count > 0) out[size++] = reversed[--count];
    return size;
}

/* ``number`` in decimal as Python's str() writes it, into ``out`` (at least 21 bytes); its size. */
static Py_ssize_t decimal(long long number, char *out) {
    if (number >= 0) return write_digits((unsigned long long)number, out);
    out[0] = '-';
    return 1 + write_digits(0ULL - (unsigned long long)number, out + 1);
}

/* The code of one id, or -1 with no exception when the Python path must decide, or -2 with an
 * exception set. */
static long long encode_one(PyObject *value, PyObject *vocabulary, unsigned long long buckets) {
    char digits[24];
    const char *text;
    Py_ssize_t size;
    PyObject *key = NULL;
    long long code;
    if (PyLong_CheckExact(value)) {
        int overflow = 0;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow != 0) return -1; /* past int64: the Python path keeps it as decimal text */
        if (number == -1 && PyErr_Occurred()) return -2;
        if (vocabulary == Py_None) {
            size = decimal(number, digits);
            return (long long)(1 + fnv1a(digits, size) % buckets);
        }
        key = PyObject_Str(value); /* the canonical id: the integer in decimal */
        if (key == NULL) return -2;
    } else if (PyUnicode_CheckExact(value)) {
        if (vocabulary == Py_None) {
            text = PyUnicode_AsUTF8AndSize(value, &size);
            if (text == NULL) { /* a lone surrogate: numpy's encoder passes it through */
                PyErr_Clear();
                return -1;
            }
            if (size > 0 && text[size - 1] == '\0') return -1; /* numpy drops trailing NULs */
            return (long long)(1 + fnv1a(text, size) % buckets);
        }
        key = Py_NewRef(value);
    } else {
        return -1;
    }
    PyObject *found = PyDict_GetItemWithError(vocabulary, key); /* borrowed */
    Py_DECREF(key);
    if (found == NULL) return PyErr_Occurred() ? -2 : 0; /* unknown id: index 0 */
    code = PyLong_AsLongLong(found);
    if (code == -1 && PyErr_Occurred()) return -2;
    return code;
}

PyDoc_STRVAR(encode_ids_doc,
"encode_ids(values: list, vocabulary: dict[str, int] | None, buckets: int) -> bytearray | None\n\n"
"int64 codes of a list of ids in native byte order: ``vocabulary.get(canonical id, 0)``, or\n"
"with no vocabulary ``1 + fnv1a64(utf8(canonical id)) % buckets``. None when an element is not an\n"
"exact str or an int within int64, or is a string numpy would hash differently.");

static PyObject *encode_ids(PyObject *module, PyObject *args) {
    PyObject *values, *vocabulary;
    unsigned long long buckets;
    if (!PyArg_ParseTuple(args, "O!OK", &PyList_Type, &values, &vocabulary, &buckets)) return NULL;
    if (vocabulary != Py_None && !PyDict_Check(vocabulary)) {
        PyErr_SetString(PyExc_TypeError, "vocabulary must be a dict or None");
        return NULL;
    }
    if (vocabulary == Py_None && buckets == 0) {
        PyErr_SetString(PyExc_ValueError, "buckets must be positive");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    PyObject *out = PyByteArray_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL) return NULL;
    int64_t *codes = (int64_t *)PyByteArray_AS_STRING(out);
    for (Py_ssize_t k = 0; k < n; k++) {
        long long code = encode_one(PyList_GET_ITEM(values, k), vocabulary, buckets);
        if (code < 0) {
            Py_DECREF(out);
            if (code == -2) return NULL;
            Py_RETURN_NONE;
        }
        codes[k] = (int64_t)code;
    }
    return out;
}

PyDoc_STRVAR(encode_sequences_doc,
"encode_sequences(rows: list, length: int, vocabulary: dict[str, int] | None, buckets: int)\n"
"    -> bytearray | None\n\n"
"A sequence column (a list of lists of ids) as a (rows, length) int64 matrix in native byte\n"
"order: each row's last ``length`` codes (encode_ids' codes), from column 0, zeros after. None\n"
"when a row is not an exact list or any element, kept or dropped, is one encode_ids declines.");

static PyObject *encode_sequences(PyObject *module, PyObject *args) {
    PyObject *rows, *vocabulary;
    Py_ssize_t length;
    unsigned long long buckets;
    if (!PyArg_ParseTuple(args, "O!nOK", &PyList_Type, &rows, &length, &vocabulary, &buckets))
        return NULL;
    if (vocabulary != Py_None && !PyDict_Check(vocabulary)) {
        PyErr_SetString(PyExc_TypeError, "vocabulary must be a dict or None");
        return NULL;
    }
    if (vocabulary == Py_None && buckets == 0) {
        PyErr_SetString(PyExc_ValueError, "buckets must be positive");
        return NULL;
    }
    if (length < 0) {
        PyErr_SetString(PyExc_ValueError, "length must not be negative");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(rows);
    PyObject *out = PyByteArray_FromStringAndSize(NULL, n * length * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL) return NULL;
    int64_t *codes = (int64_t *)PyByteArray_AS_STRING(out);
    memset(codes, 0, (size_t)(n * length) * sizeof(int64_t));
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyList_CheckExact(row)) goto decline;
        Py_ssize_t size = PyList_GET_SIZE(row);
        Py_ssize_t dropped = size > length ? size - length : 0; /* the tail is kept */
        int64_t *line = codes + r * length;
        for (Py_ssize_t k = 0; k < size; k++) { /* every element is checked, kept or not */
            long long code = encode_one(PyList_GET_ITEM(row, k), vocabulary, buckets);
            if (code < 0) {
                Py_DECREF(out);
                if (code == -2) return NULL;
                Py_RETURN_NONE;
            }
            if (k >= dropped) line[k - dropped] = (int64_t)code;
        }
    }
    return out;
decline:
    Py_DECREF(out);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(plain_floats_doc,
"plain_floats(values: list, lo: float | None = None, hi: float | None = None) -> bytearray | None\n\n"
"A numeric column as float64 in native byte order, as numpy converts it, when every element is\n"
"an exact float or int and finite as a float64. None otherwise (missing, bool, a string, NaN,\n"
"Inf, an int past the float range): the Python path decides. With ``lo`` / ``hi``, each value is\n"
"clipped to them as ``np.minimum(np.maximum(x, lo), hi)`` does (the caller passes no zero bound,\n"
"where numpy's choice between 0.0 and -0.0 would decide).");

/* An optional bound: None, or a float (an int is refused: the caller passes the spec's floats). */
static int optional_bound(PyObject *object, int *given, double *bound) {
    *given = object != NULL && object != Py_None;
    if (!*given) return 1;
    if (!PyFloat_CheckExact(object)) {
        PyErr_SetString(PyExc_TypeError, "a clip bound must be a float or None");
        return 0;
    }
    *bound = PyFloat_AS_DOUBLE(object);
    return 1;
}

static PyObject *plain_floats(PyObject *module, PyObject *args) {
    PyObject *values, *lo_object = NULL, *hi_object = NULL;
    int has_lo, has_hi;
    double lo = 0.0, hi = 0.0;
    if (!PyArg_ParseTuple(args, "O!|OO", &PyList_Type, &values, &lo_object, &hi_object))
        return NULL;
    if (!optional_bound(lo_object, &has_lo, &lo) || !optional_bound(hi_object, &has_hi, &hi))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(values);
    PyObject *out = PyByteArray_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(double));
    if (out == NULL) return NULL;
    double *floats = (double *)PyByteArray_AS_STRING(out);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *value = PyList_GET_ITEM(values, k);
        double x;
        if (PyFloat_CheckExact(value)) {
            x = PyFloat_AS_DOUBLE(value);
        } else if (PyLong_CheckExact(value)) {
            x = PyLong_AsDouble(value); /* what numpy's float64 conversion of an int calls */
            if (x == -1.0 && PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
                    Py_DECREF(out);
                    return NULL;
                }
                PyErr_Clear();
                goto decline;
            }
        } else {
            goto decline;
        }
        if (!isfinite(x)) goto decline;
        if (has_lo && x < lo) x = lo; /* np.maximum keeps x when x >= lo */
        if (has_hi && x > hi) x = hi; /* np.minimum keeps x when x <= hi */
        floats[k] = x;
    }
    return out;
decline:
    Py_DECREF(out);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(scale_floats_doc,
"scale_floats(x, mean: float, std: float, standard: bool, clip: bool) -> bytearray | None\n\n"
"A 1-d float64 buffer's values as float32 in native byte order: ``(x - mean) / std`` when\n"
"``standard``, then with ``clip`` limited to float32's range, as service.contracts.transform's\n"
"_scale computes them with numpy (an IEEE subtract, divide, max, min and cast each, in that\n"
"order). None when the buffer is of another kind or a value is NaN: the numpy path decides.");

static PyObject *scale_floats(PyObject *module, PyObject *args) {
    PyObject *object;
    double mean, std;
    int standard, clip;
    if (!PyArg_ParseTuple(args, "Oddpp", &object, &mean, &std, &standard, &clip)) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(object, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (view.ndim != 1 || view.itemsize != 8 || view.format == NULL || strcmp(view.format, "d") != 0) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    Py_ssize_t n = view.shape[0];
    const double *x = view.buf;
    PyObject *out = PyByteArray_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(float));
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    float *scaled = (float *)PyByteArray_AS_STRING(out);
    const double limit = FLT_MAX;
    for (Py_ssize_t i = 0; i < n; i++) {
        double y = standard ? (x[i] - mean) / std : x[i];
        if (isnan(y)) { /* numpy's maximum and minimum propagate NaN their own way */
            PyBuffer_Release(&view);
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        if (clip) {
            if (y < -limit) y = -limit;
            if (y > limit) y = limit;
        }
        scaled[i] = (float)y; /* round to nearest even, as numpy's astype */
    }
    PyBuffer_Release(&view);
    return out;
}

/* --- write_items ------------------------------------------------------------------------------ */

typedef struct {
    const char *at;  /* next unread byte */
    const char *end; /* one past the array's closing bracket */
} Tokens;

/* Open a JSON array as orjson writes it: "[" ... "]" with no spaces. */
static int tokens_open(Tokens *tokens, PyObject *written) {
    const char *data = PyBytes_AS_STRING(written);
    Py_ssize_t size = PyBytes_GET_SIZE(written);
    if (size < 2 || data[0] != '[' || data[size - 1] != ']') return 0;
    tokens->at = data + 1;
    tokens->end = data + size - 1;
    return 1;
}

/* The next number token: up to the next comma or the end. */
static int next_number(Tokens *tokens, const char **start, Py_ssize_t *size) {
    const char *at = tokens->at;
    if (at >= tokens->end) return 0;
    const char *stop = memchr(at, ',', (size_t)(tokens->end - at));
    if (stop == NULL) stop = tokens->end;
    if (stop == at) return 0;
    *start = at;
    *size = stop - at;
    tokens->at = stop < tokens->end ? stop + 1 : stop;
    return 1;
}

/* Whether a str is ASCII with no byte JSON escapes (a control character, '"' or '\'): then its
 * JSON is its bytes between quotes, as orjson writes it. */
static int plain_ascii(PyObject *text) {
    if (!PyUnicode_IS_COMPACT_ASCII(text)) return 0;
    const unsigned char *bytes = (const unsigned char *)PyUnicode_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    for (Py_ssize_t k = 0; k < size; k++) {
        unsigned char byte = bytes[k];
        if (byte < 0x20 || byte == '"' || byte == '\\') return 0;
    }
    return 1;
}

/* The answer's ids in ``order`` as JSON strings: ``plain`` (1 for an id written as its ASCII bytes
 * in quotes) and ``escaped`` (``escape(id)``'s bytes for any other id, NULL for a plain one).
 * Returns their total size, -1 with an exception set, or -2 (no exception) to decline. */
static Py_ssize_t id_strings(PyObject *ids, const Py_ssize_t *order, Py_ssize_t n,
                             PyObject *escape, PyObject **escaped) {
    Py_ssize_t total = 0, count = PyList_GET_SIZE(ids);
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t i = order[k];
        if (i < 0 || i >= count) {
            PyErr_Format(PyExc_IndexError, "order[%zd] = %zd is not an index of the %zd ids", k, i,
                         count);
            return -1;
        }
        PyObject *id = PyList_GET_ITEM(ids, i);
        if (!PyUnicode_CheckExact(id)) return -2;
        if (plain_ascii(id)) {
            total += PyUnicode_GET_LENGTH(id) + 2;
            continue;
        }
        PyObject *json = PyObject_CallOneArg(escape, id);
        if (json == NULL) return -1;
        if (!PyBytes_CheckExact(json)) {
            Py_DECREF(json);
            return -2;
        }
        escaped[k] = json;
        total += PyBytes_GET_SIZE(json);
    }
    return total;
}

/* The order of the items: a 1-d C-contiguous buffer of 8-byte signed integers (numpy's intp). */
static int index_buffer(PyObject *object, Py_buffer *view) {
    if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return 0;
    }
    if (view->ndim == 1 && view->itemsize == 8 && view->format != NULL &&
        (strcmp(view->format, "l") == 0 || strcmp(view->format, "q") == 0))
        return 1;
    PyBuffer_Release(view);
    return 0;
}

static inline char *put(char *out, PyObject *piece) {
    memcpy(out, PyBytes_AS_STRING(piece), (size_t)PyBytes_GET_SIZE(piece));
    return out + PyBytes_GET_SIZE(piece);
}

/* write_items copies its short parts (an item's fixed pieces, its number tokens) WIDE bytes at a
 * time, a copy of constant size the compiler inlines, then moves on by the part's own size: no
 * library call per part. So the answer's buffer has WIDE bytes of slack past its end. */
#define WIDE 32

/* A fixed piece of an item: its bytes padded to WIDE when it is that short (else written by
 * memcpy). */
typedef struct {
    char bytes[WIDE];
    const char *long_bytes; /* the piece's own bytes when longer than WIDE, else NULL */
    Py_ssize_t size;
} Piece;

static inline char *put_piece(char *out, const Piece *piece) {
    if (piece->long_bytes != NULL)
        memcpy(out, piece->long_bytes, (size_t)piece->size);
    else
        memcpy(out, piece->bytes, WIDE);
    return out + piece->size;
}

/* Where the first comma is among the WIDE bytes at ``at``, or WIDE when there is none. */
static inline Py_ssize_t comma_within_wide(const char *at) {
#if defined(__SSE2__)
    const __m128i comma = _mm_set1_epi8(',');
    __m128i low = _mm_loadu_si128((const __m128i *)at);
    __m128i high = _mm_loadu_si128((const __m128i *)(at + 16));
    unsigned mask = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(low, comma)) |
                    (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(high, comma)) << 16;
    return mask ? __builtin_ctz(mask) : WIDE;
#else
    const char *stop = memchr(at, ',', WIDE);
    return stop == NULL ? WIDE : stop - at;
#endif
}

/* The next number token written at ``out`` (which has WIDE bytes of slack); the end of what was
 * written, or NULL when the column has no next token. A token with WIDE more bytes of its column
 * after its start is copied wide; the last ones (and any longer token) by next_number. */
static inline char *put_number(char *out, Tokens *tokens) {
    const char *at = tokens->at;
    if (tokens->end - at > WIDE) {
        Py_ssize_t size = comma_within_wide(at);
        if (size > 0 && size < WIDE) {
            memcpy(out, at, WIDE);
            tokens->at = at + size + 1;
            return out + size;
        }
    }
    const char *token;
    Py_ssize_t size;
    if (!next_number(tokens, &token, &size)) return NULL;
    memcpy(out, token, (size_t)size);
    return out + size;
}

PyDoc_STRVAR(write_items_doc,
"write_items(ids: list[str], order, escape, columns: list[bytes], pieces: list[bytes],\n"
"            before: bytes = b'', after: bytes = b'') -> bytes | None\n\n"
"``before + [item, ...] + after`` where item k is pieces[0] + the JSON of ids[order[k]] + pieces[1]\n"
"+ rank k (from 1) + pieces[2] + column 0's token k + pieces[3] + column 1's token k ... +\n"
"pieces[-1]. ``order``: a 1-d intp array of indices into ``ids``. An id of ASCII characters that\n"
"JSON does not escape is written as its bytes in quotes, any other as ``escape(id)`` (orjson.dumps)\n"
"writes it. Each column is orjson's JSON of a number array in the items' order. None when an id is\n"
"not a str, ``order`` is not such an array, or a column does not hold one token per item.\n"
"``before`` and ``after`` (the rest of the answer around its items) are written into the same\n"
"bytes, so the answer is never copied to join them.");

static PyObject *write_items(PyObject *module, PyObject *args) {
    PyObject *ids, *order_object, *escape, *columns, *pieces, *before = NULL, *after = NULL;
    if (!PyArg_ParseTuple(args, "O!OOO!O!|O!O!", &PyList_Type, &ids, &order_object, &escape,
                          &PyList_Type, &columns, &PyList_Type, &pieces, &PyBytes_Type, &before,
                          &PyBytes_Type, &after))
        return NULL;
    Py_ssize_t before_size = before == NULL ? 0 : PyBytes_GET_SIZE(before);
    Py_ssize_t after_size = after == NULL ? 0 : PyBytes_GET_SIZE(after);
    Py_ssize_t n_columns = PyList_GET_SIZE(columns);
    if (PyList_GET_SIZE(pieces) != n_columns + 3) {
        PyErr_SetString(PyExc_ValueError, "pieces must number len(columns) + 3");
        return NULL;
    }
    for (Py_ssize_t c = 0; c < n_columns; c++) {
        if (!PyBytes_CheckExact(PyList_GET_ITEM(columns, c))) {
            PyErr_SetString(PyExc_TypeError, "columns must be bytes");
            return NULL;
        }
    }
    Piece *piece_at = PyMem_Calloc((size_t)(n_columns + 3), sizeof(Piece));
    if (piece_at == NULL) return PyErr_NoMemory();
    Py_ssize_t fixed = 0;
    for (Py_ssize_t p = 0; p < n_columns + 3; p++) {
        PyObject *piece = PyList_GET_ITEM(pieces, p);
        if (!PyBytes_CheckExact(piece)) {
            PyMem_Free(piece_at);
            PyErr_SetString(PyExc_TypeError, "pieces must be bytes");
            return NULL;
        }
        Py_ssize_t size = PyBytes_GET_SIZE(piece);
        fixed += size;
        piece_at[p].size = size;
        if (size > WIDE)
            piece_at[p].long_bytes = PyBytes_AS_STRING(piece);
        else
            memcpy(piece_at[p].bytes, PyBytes_AS_STRING(piece), (size_t)size);
    }
    Py_buffer order_view;
    if (!index_buffer(order_object, &order_view)) {
        PyMem_Free(piece_at);
        Py_RETURN_NONE;
    }
    const Py_ssize_t *order = (const Py_ssize_t *)order_view.buf;
    Py_ssize_t n = order_view.len / 8;
    PyObject *result = NULL;
    Tokens *number_tokens = PyMem_Malloc(sizeof(Tokens) * (size_t)(n_columns ? n_columns : 1));
    PyObject **escaped = PyMem_Calloc((size_t)(n ? n : 1), sizeof(PyObject *));
    if (number_tokens == NULL || escaped == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t variable = id_strings(ids, order, n, escape, escaped);
    if (variable < 0) {
        if (variable == -2) result = Py_NewRef(Py_None);
        goto done;
    }
    int ok = 1;
    for (Py_ssize_t c = 0; ok && c < n_columns; c++) {
        PyObject *column = PyList_GET_ITEM(columns, c);
        ok = tokens_open(&number_tokens[c], column);
        variable += PyBytes_GET_SIZE(column);
    }
    if (!ok) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    /* an upper bound: every item's fixed pieces, ids and numbers (their separators included), a
     * rank of at most 20 digits and a separating comma */
    Py_ssize_t capacity = before_size + 2 + variable + n * (fixed + 21) + after_size;
    /* written straight into the answer's bytes object, shrunk to size at the end (no copy) */
    result = PyBytes_FromStringAndSize(NULL, capacity + WIDE);
    if (result == NULL) goto done;
    char *buffer = PyBytes_AS_STRING(result);
    char *out = buffer;
    if (before_size) memcpy(out, PyBytes_AS_STRING(before), (size_t)before_size);
    out += before_size;
    *out++ = '[';
    const Piece *id_piece = &piece_at[0], *rank_piece = &piece_at[1];
    const Piece *last_piece = &piece_at[n_columns + 2];
    for (Py_ssize_t k = 0; k < n; k++) {
        if (k) *out++ = ',';
        out = put_piece(out, id_piece);
        if (escaped[k] != NULL) {
            out = put(out, escaped[k]);
        } else {
            PyObject *id = PyList_GET_ITEM(ids, order[k]);
            Py_ssize_t size = PyUnicode_GET_LENGTH(id);
            *out++ = '"';
            memcpy(out, PyUnicode_DATA(id), (size_t)size);
            out += size;
            *out++ = '"';
        }
        out = put_piece(out, rank_piece);
        out += write_digits((unsigned long long)k + 1, out);
        for (Py_ssize_t c = 0; c < n_columns; c++) {
            out = put_piece(out, &piece_at[2 + c]);
            out = put_number(out, &number_tokens[c]);
            if (out == NULL) goto decline;
        }
        out = put_piece(out, last_piece);
    }
    for (Py_ssize_t c = 0; c < n_columns; c++) {
        if (number_tokens[c].at < number_tokens[c].end) goto decline; /* more numbers than ids */
    }
    *out++ = ']';
    if (after_size) memcpy(out, PyBytes_AS_STRING(after), (size_t)after_size);
    out += after_size;
    if (_PyBytes_Resize(&result, out - buffer) < 0) result = NULL;
    goto done;
decline:
    Py_SETREF(result, Py_NewRef(Py_None));
done:
    if (escaped != NULL) {
        for (Py_ssize_t k = 0; k < n; k++) Py_XDECREF(escaped[k]);
        PyMem_Free(escaped);
    }
    PyMem_Free(number_tokens);
    PyMem_Free(piece_at);
    PyBuffer_Release(&order_view);
    return result;
}

/* --- rows_to_columns -------------------------------------------------------------------------- */

PyDoc_STRVAR(rows_to_columns_doc,
"rows_to_columns(rows: list) -> tuple[list[str], dict[str, list], int] | None\n\n"
"The candidates' ids, one list per feature (the first row's names, in its order) and the object\n"
"keys the rows hold (each row's id and features and its feature names). Each row has ``id`` and\n"
"``features`` attributes, features a dict. None when a row has no features dict or other names\n"
"than the first row: the Python path handles those.");

static PyObject *rows_to_columns(PyObject *module, PyObject *args) {
    PyObject *rows;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &rows)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    if (n == 0) Py_RETURN_NONE;
    static PyObject *id_name = NULL, *features_name = NULL;
    if (id_name == NULL) {
        id_name = PyUnicode_InternFromString("id");
        features_name = PyUnicode_InternFromString("features");
        if (id_name == NULL || features_name == NULL) return NULL;
    }
    PyObject *ids = PyList_New(n);
    PyObject *first = PyObject_GetAttr(PyList_GET_ITEM(rows, 0), features_name);
    PyObject *names = NULL, *columns = NULL, *result = NULL;
    if (ids == NULL || first == NULL) goto done;
    if (!PyDict_CheckExact(first)) goto decline;
    names = PyDict_Keys(first);
    if (names == NULL) goto done;
    Py_ssize_t width = PyList_GET_SIZE(names);
    columns = PyList_New(width);
    if (columns == NULL) goto done;
    for (Py_ssize_t j = 0; j < width; j++) {
        PyObject *column = PyList_New(n);
        if (column == NULL) goto done;
        PyList_SET_ITEM(columns, j, column);
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *row = PyList_GET_ITEM(rows, k);
        PyObject *id = PyObject_GetAttr(row, id_name);
        if (id == NULL) goto done;
        PyList_SET_ITEM(ids, k, id);
        PyObject *features = PyObject_GetAttr(row, features_name);
        if (features == NULL) goto done;
        int same = PyDict_CheckExact(features) && PyDict_GET_SIZE(features) == width;
        for (Py_ssize_t j = 0; same && j < width; j++) {
            PyObject *value = PyDict_GetItemWithError(features, PyList_GET_ITEM(names, j));
            if (value == NULL) {
                same = 0;
                if (PyErr_Occurred()) {
                    Py_DECREF(features);
                    goto done;
                }
                break;
            }
            PyList_SET_ITEM(PyList_GET_ITEM(columns, j), k, Py_NewRef(value));
        }
        Py_DECREF(features);
        if (!same) goto decline;
    }
    PyObject *by_name = PyDict_New();
    if (by_name == NULL) goto done;
    for (Py_ssize_t j = 0; j < width; j++) {
        if (PyDict_SetItem(by_name, PyList_GET_ITEM(names, j), PyList_GET_ITEM(columns, j)) < 0) {
            Py_DECREF(by_name);
            goto done;
        }
    }
    result = Py_BuildValue("(ONn)", ids, by_name, 2 * n + n * width);
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    /* a list not yet filled holds NULLs, which its deallocation skips */
    Py_XDECREF(ids);
    Py_XDECREF(first);
    Py_XDECREF(names);
    Py_XDECREF(columns);
    return result;
}

/* --- bucket_counts ----------------------------------------------------------------------------- */

PyDoc_STRVAR(bucket_counts_doc,
"bucket_counts(upper, columns: list, counts: list, guide_from: int = 0, guide=None, /)\n"
"    -> list[float] | None\n\n"
"Adds each column's finite values to its counts and returns each column's sum of them. ``upper``:\n"
"the histogram's bounds (float64, ascending); a value goes to the first slot whose bound is >= it,\n"
"past every bound to the last slot (``np.searchsorted(upper, x, side='left')``). ``columns``: 1-d\n"
"float64 buffers; ``counts``: writable int64 buffers of len(upper) + 1 slots, one per column. None\n"
"when a buffer is not of that kind (nothing is counted then).\n\n"
"``guide_from`` and ``guide`` (``service.metrics.bucket_guide``) find a positive value's slot without\n"
"searching: a positive double's bits shifted right by GUIDE_SHIFT (its exponent and first mantissa\n"
"bits) name its cell, and ``guide[cell - guide_from]`` (a 1-d int64 buffer) is how many bounds are\n"
"below the cell's smallest value; the value's slot is that or a bound or two further in the cell.");

static int count_slots(PyObject *object, Py_buffer *view, Py_ssize_t slots) {
    if (PyObject_GetBuffer(object, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return 0;
    if (view->itemsize == 8 && view->len == slots * 8 && view->format != NULL &&
        (strcmp(view->format, "l") == 0 || strcmp(view->format, "q") == 0))
        return 1;
    PyBuffer_Release(view);
    return 0;
}

/* How many bounds are < x (the first bound >= x), without a branch on the comparisons: scores
 * fall anywhere, so a branching search would mispredict about every other step. */
static inline Py_ssize_t bounds_below(const double *bound, Py_ssize_t size, double x) {
    if (size == 0) return 0;
    const double *base = bound;
    while (size > 1) {
        Py_ssize_t half = size / 2;
        base = base[half] < x ? base + half : base;
        size -= half;
    }
    return (base - bound) + (*base < x);
}

#define GUIDE_SHIFT 46 /* 11 exponent bits and 6 mantissa bits: 64 cells per power of two */

/* ``x``'s slot (as bounds_below gives it) from the guide when x is positive and its cell is in the
 * guide: the count of bounds below the cell, then a step past each bound of the cell that is below
 * x. Any other x is searched. ``bound`` holds a sentinel (+inf) after its ``size`` bounds, so the
 * step always stops; an entry out of [0, size] (a guide made for other bounds) is clamped, so a
 * wrong guide miscounts but never reads past the bounds. */
static inline Py_ssize_t guided_slot(const double *bound, Py_ssize_t size, double x,
                                     unsigned long long from, const long long *guide,
                                     Py_ssize_t cells) {
    if (!(x > 0.0) || cells == 0) return bounds_below(bound, size, x);
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    uint64_t key = bits >> GUIDE_SHIFT;
    if (key < from || key - from >= (uint64_t)cells) return bounds_below(bound, size, x);
    long long start = guide[key - from];
    Py_ssize_t slot = start < 0 ? 0 : start > size ? size : (Py_ssize_t)start;
    while (bound[slot] < x) slot++;
    return slot;
}

static PyObject *bucket_counts(PyObject *module, PyObject *args) {
    PyObject *upper_object, *columns, *counts, *guide_object = Py_None;
    unsigned long long guide_from = 0;
    if (!PyArg_ParseTuple(args, "OO!O!|KO", &upper_object, &PyList_Type, &columns, &PyList_Type,
                          &counts, &guide_from, &guide_object))
        return NULL;
    Py_ssize_t k = PyList_GET_SIZE(columns);
    if (PyList_GET_SIZE(counts) != k) Py_RETURN_NONE;
    Py_buffer guide_view = {0};
    const long long *guide = NULL;
    Py_ssize_t cells = 0;
    if (guide_object != Py_None) {
        if (!index_buffer(guide_object, &guide_view)) Py_RETURN_NONE;
        guide = guide_view.buf;
        cells = guide_view.len / 8;
    }
    Py_buffer upper;
    if (!float64_column(upper_object, &upper)) {
        if (guide != NULL) PyBuffer_Release(&guide_view);
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    const char *bounds_at = upper.buf;
    Py_ssize_t bounds = upper.shape[0], bounds_stride = upper.strides[0];
    double *bound = PyMem_Malloc((size_t)(bounds + 1) * sizeof(double));
    PyObject *sums = PyList_New(k);
    if (bound == NULL || sums == NULL) {
        PyBuffer_Release(&upper);
        if (guide != NULL) PyBuffer_Release(&guide_view);
        PyMem_Free(bound);
        Py_XDECREF(sums);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < bounds; i++) bound[i] = *(const double *)(bounds_at + i * bounds_stride);
    bound[bounds] = INFINITY; /* guided_slot's sentinel */
    PyBuffer_Release(&upper);
    /* every buffer first, so a column that is not float64 declines before anything is counted */
    Py_buffer *views = PyMem_Calloc((size_t)(2 * k + 1), sizeof(Py_buffer));
    Py_ssize_t held = 0;
    int usable = views != NULL;
    for (Py_ssize_t j = 0; usable && j < k; j++) {
        usable = float64_column(PyList_GET_ITEM(columns, j), &views[2 * j]);
        held += usable;
        usable = usable && count_slots(PyList_GET_ITEM(counts, j), &views[2 * j + 1], bounds + 1);
        held += usable;
    }
    if (usable) {
        for (Py_ssize_t j = 0; j < k; j++) {
            const char *at = views[2 * j].buf;
            Py_ssize_t n = views[2 * j].shape[0], stride = views[2 * j].strides[0];
            long long *slot = views[2 * j + 1].buf;
            double total = 0.0;
            for (Py_ssize_t i = 0; i < n; i++) {
                double x = *(const double *)(at + i * stride);
                if (!isfinite(x)) continue;
                slot[guided_slot(bound, bounds, x, guide_from, guide, cells)]++;
                total += x;
            }
            PyList_SET_ITEM(sums, j, PyFloat_FromDouble(total));
        }
    }
    for (Py_ssize_t h = 0; h < held; h++) PyBuffer_Release(&views[h]);
    if (guide != NULL) PyBuffer_Release(&guide_view);
    PyMem_Free(views);
    PyMem_Free(bound);
    if (!usable) {
        Py_DECREF(sums);
        if (views == NULL) return PyErr_NoMemory();
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        if (PyList_GET_ITEM(sums, j) == NULL) {
            Py_DECREF(sums);
            return NULL;
        }
    }
    return sums;
}

static PyMethodDef methods[] = {
    {"rows_to_columns", rows_to_columns, METH_VARARGS, rows_to_columns_doc},
    {"encode_ids", encode_ids, METH_VARARGS, encode_ids_doc},
    {"write_items", write_items, METH_VARARGS, write_items_doc},
    {"encode_sequences", encode_sequences, METH_VARARGS, encode_sequences_doc},
    {"plain_floats", plain_floats, METH_VARARGS, plain_floats_doc},
    {"scale_floats", scale_floats, METH_VARARGS, scale_floats_doc},
    {"bucket_counts", bucket_counts, METH_VARARGS, bucket_counts_doc},
    {"parse_rank_body", parse_rank_body, METH_VARARGS, PARSE_RANK_BODY_DOC},
    {"scores_within", scores_within, METH_VARARGS, SCORES_WITHIN_DOC},
    {"weighted_sum", weighted_sum, METH_VARARGS, WEIGHTED_SUM_DOC},
    {"indices_within", indices_within, METH_VARARGS, INDICES_WITHIN_DOC},
    {"best_first", best_first, METH_VARARGS, BEST_FIRST_DOC},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "service._speedups",
    "Hot loops of /rank in C; see the source's header.", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    PyObject *made = PyModule_Create(&module);
    if (made != NULL && PyModule_AddIntConstant(made, "GUIDE_SHIFT", GUIDE_SHIFT) < 0) Py_CLEAR(made);
    return made;
}
