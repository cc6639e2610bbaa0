/* parse_rank_body: a /rank body's JSON straight into what service.rank_body needs, in one pass.
 *
 * The list form's candidates ([{"id": ..., "features": {...}}, ...]) become the ids and one list per
 * feature as the rows are read, so no object is built per candidate; the columnar form's
 * ({"ids": [...], "features": {name: [...]}}) the same ids and lists, checked as they are read (ids
 * of 1 to 256 characters, values strings, numbers or nulls, every list as long as the ids). Every
 * other member of the body becomes plain Python values (dict, list, str, int, float, bool, None), as
 * msgspec's untyped decoder builds them. service.rank_body checks those against the same rules as
 * the msgspec path. A short string met again among the candidates' features is the same str object
 * (Recent, below): fewer objects made and freed, and one hash per distinct value for the transform.
 *
 * It declines (returns None) whatever it is not sure of, and the msgspec path takes over: a string
 * with an escape or a control character, bytes that are not UTF-8, an integer past int64, a number
 * past the float range, nesting deeper than MAX_DEPTH, a key named twice in any object, candidate rows
 * that are not objects of "id" (a string) and "features" (an object of strings, numbers and nulls)
 * or whose feature names differ from the first row's (same names, same order), columns given before
 * the ids, an id named twice among the candidates, anything after the body. A body it reads thus
 * repeats no key in any object and no candidate id, which rank_body then need not check (it counts
 * the colons of a body msgspec reads, and puts its ids in a set).
 * tests/service/test_rank_json.py holds it to the msgspec path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_fnv1a.h"
#include "_rank_json.h"

#define MAX_DEPTH 64
#define MAX_NAMES 1024
#define MAX_NUMBER 512 /* bytes of one number token; a longer one declines */

typedef struct {
    const char *at;
    const char *end;
    int depth;
} Cursor;

/* A result that is neither a value nor an error: the msgspec path decides. */
#define DECLINE NULL

/* Append ``item`` (a new reference, taken over; NULL fails) to a list this reader is building:
 * into its spare room when it has some (no call, no reference count traffic), else as
 * PyList_Append does. 0, or -1 when item is NULL or the list cannot grow. */
static inline int append_new(PyObject *list, PyObject *item) {
    if (item == NULL) return -1;
    PyListObject *growing = (PyListObject *)list;
    Py_ssize_t size = Py_SIZE(growing);
    if (size < growing->allocated) {
        PyList_SET_ITEM(list, size, item);
        Py_SET_SIZE(growing, size + 1);
        return 0;
    }
    int failed = PyList_Append(list, item);
    Py_DECREF(item);
    return failed;
}

static inline void skip_space(Cursor *c) {
    /* a byte past the space is no JSON whitespace: one test where bodies are compact */
    if (c->at < c->end && (unsigned char)*c->at > ' ') return;
    while (c->at < c->end && (*c->at == ' ' || *c->at == '\n' || *c->at == '\r' || *c->at == '\t'))
        c->at++;
}

static inline int take(Cursor *c, char byte) {
    skip_space(c);
    if (c->at < c->end && *c->at == byte) {
        c->at++;
        return 1;
    }
    return 0;
}

/* The bytes between the quotes of a string at c->at, which has no escape and no control byte;
 * 0 when there is no such string. */
static int raw_string(Cursor *c, const char **start, Py_ssize_t *size) {
    skip_space(c);
    if (c->at >= c->end || *c->at != '"') return 0;
    const char *s = c->at + 1, *q = s;
    while (q < c->end) {
        unsigned char byte = (unsigned char)*q;
        if (byte == '"') break;
        if (byte == '\\' || byte < 0x20) return 0;
        q++;
    }
    if (q >= c->end) return 0;
    *start = s;
    *size = q - s;
    c->at = q + 1;
    return 1;
}

/* A str from UTF-8 bytes; NULL (no error set) when they are not UTF-8 (lone surrogates included).
 * ASCII bytes (most ids and names) are copied into a new ASCII str: the same value the decoder
 * makes, without its general path. */
static PyObject *text(const char *start, Py_ssize_t size) {
    Py_ssize_t ascii = 0;
    while (ascii < size && !((unsigned char)start[ascii] & 0x80)) ascii++;
    if (ascii == size && size > 1) { /* a single character is left to the decoder: its shared str */
        PyObject *made = PyUnicode_New(size, 127);
        if (made != NULL) memcpy(PyUnicode_1BYTE_DATA(made), start, (size_t)size);
        return made;
    }
    PyObject *made = PyUnicode_DecodeUTF8(start, size, "strict");
    if (made == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) PyErr_Clear();
    return made;
}

static PyObject *string_value(Cursor *c) {
    const char *start;
    Py_ssize_t size;
    if (!raw_string(c, &start, &size)) return DECLINE;
    return text(start, size);
}

static int same_bytes(const char *a, Py_ssize_t a_size, const char *b, Py_ssize_t b_size) {
    return a_size == b_size && memcmp(a, b, (size_t)a_size) == 0;
}

/* --- the candidates' ids, each once ----------------------------------------------------------- */

/* The ids met so far, to decline a body that names one twice (pydantic answers it) without hashing
 * every id's str as a Python set would: open addressing on an FNV-1a hash of the id's bytes (an
 * id has no escape, so the same id is always the same bytes). A probe longer than MAX_PROBE declines
 * as well, so ids made to collide cost at most that many comparisons each. */
#define MAX_PROBE 64
#define FIRST_SLOTS 1024 /* twice the ids a usual request holds: no regrowth */

typedef struct {
    uint32_t index; /* 1 + the id's position in reading order; 0: an empty slot */
    uint32_t tag;   /* the hash's high half, compared before the bytes */
} Slot;

typedef struct {
    const char *at; /* the id's bytes */
    Py_ssize_t size;
    uint64_t hash;
} Met;

typedef struct {
    Met *met; /* the ids, in reading order */
    Py_ssize_t count, room;
    Slot *slots;
    size_t mask; /* slots - 1: a power of two, at least twice count */
} Seen;

static void seen_free(Seen *seen) {
    PyMem_Free(seen->met);
    PyMem_Free(seen->slots);
    memset(seen, 0, sizeof(Seen));
}

/* Put id ``k`` in a slot: 1, or 0 when an id of the same bytes holds one or no slot is near. */
static int seen_place(Seen *seen, Py_ssize_t k) {
    const Met *id = &seen->met[k];
    uint32_t tag = (uint32_t)(id->hash >> 32);
    size_t i = (size_t)id->hash & seen->mask;
    for (int probe = 0; probe < MAX_PROBE; probe++, i = (i + 1) & seen->mask) {
        Slot *slot = &seen->slots[i];
        if (slot->index == 0) {
            slot->index = (uint32_t)(k + 1);
            slot->tag = tag;
            return 1;
        }
        const Met *other = &seen->met[slot->index - 1];
        if (slot->tag == tag && same_bytes(id->at, id->size, other->at, other->size)) return 0;
    }
    return 0;
}

/* Note the id in [start, start + size): 1 when it is new, 0 when it was met before (or its slot is
 * too far), -1 with MemoryError set. */
static int seen_add(Seen *seen, const char *start, Py_ssize_t size) {
    if (seen->count == seen->room) {
        Py_ssize_t room = seen->room ? 2 * seen->room : FIRST_SLOTS / 2;
        if (room > (Py_ssize_t)UINT32_MAX - 1) return 0;
        Met *met = PyMem_Realloc(seen->met, (size_t)room * sizeof(Met));
        if (met == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        seen->met = met;
        seen->room = room;
    }
    if (seen->slots == NULL || (size_t)(seen->count + 1) * 2 > seen->mask + 1) {
        size_t slots = seen->slots == NULL ? FIRST_SLOTS : 2 * (seen->mask + 1);
        Slot *table = PyMem_Calloc(slots, sizeof(Slot));
        if (table == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        PyMem_Free(seen->slots);
        seen->slots = table;
        seen->mask = slots - 1;
        for (Py_ssize_t k = 0; k < seen->count; k++)
            if (!seen_place(seen, k)) return 0;
    }
    Py_ssize_t k = seen->count;
    seen->met[k] = (Met){start, size, fnv1a(start, size)};
    if (!seen_place(seen, k)) return 0;
    seen->count++;
    return 1;
}

/* A candidate id: a string of 1 to 256 characters not met before among the candidates. */
static PyObject *id_value(Cursor *c, Seen *seen) {
    const char *start;
    Py_ssize_t size;
    if (!raw_string(c, &start, &size)) return DECLINE;
    PyObject *id = text(start, size);
    if (id == NULL) return NULL;
    Py_ssize_t length = PyUnicode_GET_LENGTH(id);
    if (length < 1 || length > 256 || seen_add(seen, start, size) != 1) Py_CLEAR(id);
    return id;
}

static inline int is_digit(char byte) { return byte >= '0' && byte <= '9'; }

static const double POWERS_OF_TEN[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* A JSON number: an int within int64 when it has no fraction or exponent, else a finite float,
 * correctly rounded. Most floats take Clinger's exact path (at most 2^53 as the digits' integer
 * and a power of ten up to 1e22: one IEEE multiplication or division, itself correctly rounded);
 * the rest CPython's float parser. */
static PyObject *number_value(Cursor *c) {
    const char *s = c->at, *q = s, *end = c->end;
    int negative = q < end && *q == '-';
    q += negative;
    unsigned long long mantissa = 0;
    int significant = 0; /* digits in mantissa after its leading zeros; past 19 it is not exact */
    if (q < end && *q == '0') {
        q++;
    } else if (q < end && *q >= '1' && *q <= '9') {
        for (; q < end && is_digit(*q); q++, significant++)
            if (significant < 19) mantissa = mantissa * 10 + (unsigned long long)(*q - '0');
    } else {
        return DECLINE;
    }
    int integer_digits = significant;
    int fraction = 0, fraction_digits = 0;
    if (q < end && *q == '.') {
        fraction = 1;
        q++;
        if (q >= end || !is_digit(*q)) return DECLINE;
        for (; q < end && is_digit(*q); q++) {
            if (mantissa == 0 && *q == '0') {
                fraction_digits++;
                continue;
            }
            if (significant < 19) {
                mantissa = mantissa * 10 + (unsigned long long)(*q - '0');
                fraction_digits++;
            }
            significant++;
        }
    }
    long exponent = 0;
    if (q < end && (*q == 'e' || *q == 'E')) {
        fraction = 1;
        q++;
        int exponent_negative = q < end && *q == '-';
        if (q < end && (*q == '+' || *q == '-')) q++;
        if (q >= end || !is_digit(*q)) return DECLINE;
        for (; q < end && is_digit(*q); q++)
            if (exponent < 100000) exponent = exponent * 10 + (*q - '0');
        if (exponent_negative) exponent = -exponent;
    }
    c->at = q;
    if (!fraction) {
        if (integer_digits > 19) return DECLINE;
        unsigned long long bound = (unsigned long long)LLONG_MAX + (unsigned long long)negative;
        if (mantissa > bound) return DECLINE; /* 19 digits never wrap 64 bits */
        if (negative) return PyLong_FromLongLong(mantissa == bound ? LLONG_MIN : -(long long)mantissa);
        return PyLong_FromUnsignedLongLong(mantissa);
    }
    long power = exponent - fraction_digits;
    if (significant <= 19 && mantissa <= (1ULL << 53) && power >= -22 && power <= 22) {
        double value = (double)mantissa;
        value = power < 0 ? value / POWERS_OF_TEN[-power] : value * POWERS_OF_TEN[power];
        return PyFloat_FromDouble(negative ? -value : value);
    }
    Py_ssize_t size = q - s;
    if (size >= MAX_NUMBER) return DECLINE;
    char token[MAX_NUMBER];
    memcpy(token, s, (size_t)size);
    token[size] = '\0';
    char *stop;
    double value = PyOS_string_to_double(token, &stop, NULL);
    if (value == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError)) return NULL;
        PyErr_Clear();
        return DECLINE;
    }
    if (stop != token + size || !isfinite(value)) return DECLINE;
    return PyFloat_FromDouble(value);
}

static int literal(Cursor *c, const char *word, size_t size) {
    if ((size_t)(c->end - c->at) < size || memcmp(c->at, word, size) != 0) return 0;
    c->at += size;
    return 1;
}

/* A scalar: string, number or null (true and false too when bools is set); DECLINE otherwise. */
static PyObject *scalar_value(Cursor *c, int bools) {
    skip_space(c);
    if (c->at >= c->end) return DECLINE;
    char byte = *c->at;
    if (byte == '"') return string_value(c);
    if (byte == '-' || is_digit(byte)) return number_value(c);
    if (byte == 'n' && literal(c, "null", 4)) Py_RETURN_NONE;
    if (bools && byte == 't' && literal(c, "true", 4)) Py_RETURN_TRUE;
    if (bools && byte == 'f' && literal(c, "false", 5)) Py_RETURN_FALSE;
    return DECLINE;
}

/* Short strings met again in one body's candidate features (a category, a device) share one str:
 * the same bytes (no escapes) always decode to the same value, and the one object keeps its hash
 * for the transform's vocabulary lookups. Direct-mapped by an FNV-1a hash of the bytes; a miss
 * replaces the slot's string. */
#define RECENT_SLOTS 64
#define RECENT_MAX_BYTES 32

typedef struct {
    const char *at[RECENT_SLOTS];
    Py_ssize_t size[RECENT_SLOTS];
    PyObject *value[RECENT_SLOTS];
} Recent;

static void recent_clear(Recent *recent) {
    for (int k = 0; k < RECENT_SLOTS; k++) Py_CLEAR(recent->value[k]);
}

/* The string at c->at as a str, taken from ``recent`` when the same bytes were met before. */
static PyObject *recent_string(Cursor *c, Recent *recent) {
    const char *start;
    Py_ssize_t size;
    if (!raw_string(c, &start, &size)) return DECLINE;
    if (size > RECENT_MAX_BYTES) return text(start, size);
    uint64_t hash = fnv1a(start, size);
    unsigned int slot = (unsigned int)((hash ^ (hash >> 32)) % RECENT_SLOTS);
    PyObject *kept = recent->value[slot];
    if (kept != NULL && recent->size[slot] == size &&
        memcmp(start, recent->at[slot], (size_t)size) == 0) {
        Py_INCREF(kept);
        return kept;
    }
    PyObject *made = text(start, size);
    if (made == NULL) return NULL;
    Py_XSETREF(recent->value[slot], Py_NewRef(made));
    recent->at[slot] = start;
    recent->size[slot] = size;
    return made;
}

/* A candidate feature's value: a string (through ``recent``), a number or null. */
static PyObject *cell_value(Cursor *c, Recent *recent) {
    skip_space(c);
    if (c->at < c->end && *c->at == '"') return recent_string(c, recent);
    return scalar_value(c, 0);
}

static PyObject *any_value(Cursor *c);

static PyObject *array_value(Cursor *c) {
    PyObject *list = PyList_New(0);
    if (list == NULL) return NULL;
    if (take(c, ']')) return list;
    do {
        if (append_new(list, any_value(c)) < 0) {
            Py_DECREF(list);
            return NULL;
        }
    } while (take(c, ','));
    if (take(c, ']')) return list;
    Py_DECREF(list);
    return DECLINE;
}

static PyObject *object_value(Cursor *c) {
    PyObject *dict = PyDict_New();
    if (dict == NULL) return NULL;
    if (take(c, '}')) return dict;
    do {
        PyObject *key = string_value(c);
        PyObject *item = key != NULL && take(c, ':') ? any_value(c) : NULL;
        Py_ssize_t size = PyDict_GET_SIZE(dict);
        /* a repeated key (the dict did not grow) declines: pydantic validates every value */
        int failed = item == NULL || PyDict_SetItem(dict, key, item) < 0 ||
                     PyDict_GET_SIZE(dict) == size;
        Py_XDECREF(key);
        Py_XDECREF(item);
        if (failed) {
            Py_DECREF(dict);
            return NULL;
        }
    } while (take(c, ','));
    if (take(c, '}')) return dict;
    Py_DECREF(dict);
    return DECLINE;
}

static PyObject *any_value(Cursor *c) {
    skip_space(c);
    if (c->at >= c->end) return DECLINE;
    char byte = *c->at;
    if (byte != '[' && byte != '{') return scalar_value(c, 1);
    if (++c->depth > MAX_DEPTH) return DECLINE;
    c->at++;
    PyObject *value = byte == '[' ? array_value(c) : object_value(c);
    c->depth--;
    return value;
}

/* --- the list form's candidates ---------------------------------------------------------------- */

typedef struct {
    PyObject *ids;     /* list[str] */
    PyObject *columns; /* list of lists, one per feature name of the first row */
    PyObject *names;   /* list[str], the first row's feature names */
    const char *name_at[MAX_NAMES];
    Py_ssize_t name_size[MAX_NAMES];
    Py_ssize_t width;  /* -1 until the first row's features are read */
    Py_ssize_t keys;   /* object keys in the rows */
    Recent recent;     /* the feature strings met so far */
    Seen seen;         /* the ids */
} Rows;

/* The first row's features: names (unique) and the columns they open. 1 read, 0 declined or failed. */
static int first_features(Cursor *c, Rows *rows) {
    rows->width = 0;
    if (take(c, '}')) return 1;
    do {
        const char *start;
        Py_ssize_t size;
        if (rows->width >= MAX_NAMES || !raw_string(c, &start, &size) || !take(c, ':')) return 0;
        for (Py_ssize_t j = 0; j < rows->width; j++)
            if (same_bytes(start, size, rows->name_at[j], rows->name_size[j])) return 0;
        PyObject *name = text(start, size);
        if (name == NULL) return 0;
        int failed = PyList_Append(rows->names, name) < 0;
        Py_DECREF(name);
        PyObject *column = failed ? NULL : PyList_New(0);
        failed = column == NULL || PyList_Append(rows->columns, column) < 0;
        Py_XDECREF(column);
        if (failed) return 0;
        PyObject *value = cell_value(c, &rows->recent);
        failed = value == NULL || PyList_Append(column, value) < 0;
        Py_XDECREF(value);
        if (failed) return 0;
        rows->name_at[rows->width] = start;
        rows->name_size[rows->width] = size;
        rows->width++;
    } while (take(c, ','));
    return take(c, '}');
}

/* The quoted name at c->at when it is exactly ``quoted`` (``size`` bytes with its quotes). Names have
 * no escapes, so the same name is always the same bytes. */
static inline int quoted_name(Cursor *c, const char *quoted, Py_ssize_t size) {
    skip_space(c);
    if (c->end - c->at < size || memcmp(c->at, quoted, (size_t)size) != 0) return 0;
    c->at += size;
    return 1;
}

/* A later row's features: the first row's names in its order. */
static int next_features(Cursor *c, Rows *rows) {
    Py_ssize_t width = rows->width;
    if (width == 0) return take(c, '}');
    for (Py_ssize_t j = 0; j < width; j++) {
        /* the first row's name with its quotes, where the body holds it */
        if ((j > 0 && !take(c, ',')) ||
            !quoted_name(c, rows->name_at[j] - 1, rows->name_size[j] + 2) || !take(c, ':'))
            return 0;
        if (append_new(PyList_GET_ITEM(rows->columns, j), cell_value(c, &rows->recent)) < 0)
            return 0;
    }
    return take(c, '}');
}

/* One row {"id": "...", "features": {...}}, keys in either order, "features" optional. */
static int row(Cursor *c, Rows *rows) {
    if (!take(c, '{')) return 0;
    int has_id = 0, has_features = 0;
    do {
        if (!has_id && quoted_name(c, "\"id\"", 4)) {
            has_id = 1;
            if (!take(c, ':') || append_new(rows->ids, id_value(c, &rows->seen)) < 0) return 0;
        } else if (!has_features && quoted_name(c, "\"features\"", 10)) {
            has_features = 1;
            if (!take(c, ':') || !take(c, '{')) return 0;
            if (rows->width < 0 ? !first_features(c, rows) : !next_features(c, rows)) return 0;
            rows->keys += 1 + rows->width;
        } else {
            return 0;
        }
    } while (take(c, ','));
    if (!has_id || !take(c, '}')) return 0;
    if (!has_features) {
        if (rows->width > 0) return 0; /* a row without the names the first row has */
        rows->width = 0;
    }
    rows->keys += 1;
    return 1;
}

/* (ids, {name: column}, False, keys) of the candidate rows; the cursor is past the opening bracket. */
static PyObject *candidate_rows(Cursor *c) {
    Rows *rows = PyMem_Malloc(sizeof(Rows));
    if (rows == NULL) return PyErr_NoMemory();
    rows->ids = PyList_New(0);
    rows->columns = PyList_New(0);
    rows->names = PyList_New(0);
    rows->width = -1;
    rows->keys = 0;
    memset(&rows->recent, 0, sizeof(Recent));
    memset(&rows->seen, 0, sizeof(Seen));
    PyObject *result = NULL;
    if (rows->ids == NULL || rows->columns == NULL || rows->names == NULL) goto done;
    do {
        if (!row(c, rows)) goto done;
    } while (take(c, ','));
    if (!take(c, ']')) goto done;
    PyObject *by_name = PyDict_New();
    if (by_name == NULL) goto done;
    for (Py_ssize_t j = 0; j < rows->width; j++) {
        if (PyDict_SetItem(by_name, PyList_GET_ITEM(rows->names, j),
                           PyList_GET_ITEM(rows->columns, j)) < 0) {
            Py_DECREF(by_name);
            goto done;
        }
    }
    result = Py_BuildValue("(ONOn)", rows->ids, by_name, Py_False, rows->keys);
done:
    Py_XDECREF(rows->ids);
    Py_XDECREF(rows->columns);
    Py_XDECREF(rows->names);
    recent_clear(&rows->recent);
    seen_free(&rows->seen);
    PyMem_Free(rows);
    return result;
}

/* --- the columnar form's candidates ----------------------------------------------------------- */

/* ["id", ...]: strings of 1 to 256 characters, each once, at least one; the cursor is past the
 * bracket. */
static PyObject *id_list(Cursor *c) {
    PyObject *ids = PyList_New(0);
    if (ids == NULL) return NULL;
    Seen seen = {0};
    do {
        if (append_new(ids, id_value(c, &seen)) < 0) {
            seen_free(&seen);
            Py_DECREF(ids);
            return NULL;
        }
    } while (take(c, ','));
    seen_free(&seen);
    if (take(c, ']')) return ids;
    Py_DECREF(ids);
    return DECLINE;
}

/* {name: [scalar, ...], ...}, every list ``n`` long; the cursor is past the brace. A repeated name
 * declines. */
static PyObject *scalar_columns(Cursor *c, Py_ssize_t n) {
    PyObject *columns = PyDict_New();
    if (columns == NULL || take(c, '}')) return columns;
    Recent recent = {0};
    do {
        PyObject *name = string_value(c), *column = NULL;
        if (name != NULL && take(c, ':') && take(c, '[') && (column = PyList_New(0)) != NULL) {
            int ok = 1;
            do {
                ok = append_new(column, cell_value(c, &recent)) == 0;
            } while (ok && take(c, ','));
            Py_ssize_t names = PyDict_GET_SIZE(columns);
            if (!ok || !take(c, ']') || PyList_GET_SIZE(column) != n ||
                PyDict_SetItem(columns, name, column) < 0 || PyDict_GET_SIZE(columns) == names)
                Py_CLEAR(column);
        }
        Py_XDECREF(name);
        if (column == NULL) {
            recent_clear(&recent);
            Py_DECREF(columns);
            return NULL;
        }
        Py_DECREF(column);
    } while (take(c, ','));
    recent_clear(&recent);
    if (take(c, '}')) return columns;
    Py_DECREF(columns);
    return DECLINE;
}

/* (ids, {name: column}, True, keys) of {"ids": [...], "features": {...}}, "ids" first (the columns'
 * length is the ids'); the cursor is past the opening brace. */
static PyObject *candidate_columns(Cursor *c) {
    Py_ssize_t keys = 1;
    if (!quoted_name(c, "\"ids\"", 5) || !take(c, ':') || !take(c, '[')) return DECLINE;
    PyObject *ids = id_list(c), *columns = NULL;
    if (ids == NULL) return NULL;
    if (take(c, ',')) {
        if (quoted_name(c, "\"features\"", 10) && take(c, ':') && take(c, '{')) {
            columns = scalar_columns(c, PyList_GET_SIZE(ids));
            keys += 1 + (columns == NULL ? 0 : PyDict_GET_SIZE(columns)); /* features, the names */
        }
    } else {
        columns = PyDict_New();
    }
    PyObject *result = NULL;
    if (columns != NULL && take(c, '}'))
        result = Py_BuildValue("(OOOn)", ids, columns, Py_True, keys);
    Py_DECREF(ids);
    Py_XDECREF(columns);
    return result;
}

/* --- the body ---------------------------------------------------------------------------------- */

PyObject *parse_rank_body(PyObject *module, PyObject *args) {
    Py_buffer body;
    if (!PyArg_ParseTuple(args, "y*", &body)) return NULL;
    Cursor c = {(const char *)body.buf, (const char *)body.buf + body.len, 1};
    PyObject *fields = PyDict_New(), *candidates = NULL, *result = NULL;
    if (fields == NULL || !take(&c, '{') || take(&c, '}')) goto done;
    do {
        const char *key;
        Py_ssize_t size;
        if (!raw_string(&c, &key, &size) || !take(&c, ':')) goto done;
        if (same_bytes(key, size, "candidates", 10)) {
            if (candidates != NULL) goto done; /* named twice */
            if (take(&c, '[')) {
                candidates = candidate_rows(&c);
            } else if (take(&c, '{')) {
                candidates = candidate_columns(&c);
            }
            if (candidates == NULL) goto done;
            continue;
        }
        PyObject *name = text(key, size);
        if (name == NULL) goto done;
        int known = PyDict_Contains(fields, name);
        PyObject *value = known == 0 ? any_value(&c) : NULL;
        int failed = value == NULL || PyDict_SetItem(fields, name, value) < 0;
        Py_DECREF(name);
        Py_XDECREF(value);
        if (failed) goto done;
    } while (take(&c, ','));
    if (candidates == NULL || !take(&c, '}')) goto done;
    skip_space(&c);
    if (c.at != c.end) goto done;
    result = PyTuple_Pack(2, fields, candidates);
done:
    Py_XDECREF(fields);
    Py_XDECREF(candidates);
    PyBuffer_Release(&body);
    if (result == NULL && (!PyErr_Occurred() || !PyErr_ExceptionMatches(PyExc_MemoryError))) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return result;
}
