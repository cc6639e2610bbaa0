/* The 64-bit FNV-1a hash, shared by the C files of service._speedups: the categorical hash of
 * service.contracts.hashing (in _speedups.c), and in the body reader the candidate ids' table and
 * the slot of a recent feature string. */
#ifndef MTRANK_FNV1A_H
#define MTRANK_FNV1A_H
#include <Python.h>
#include <stdint.h>

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static inline uint64_t fnv1a(const char *bytes, Py_ssize_t size) {
    uint64_t hash = FNV_OFFSET;
    for (Py_ssize_t k = 0; k < size; k++) {
        hash ^= (unsigned char)bytes[k];
        hash *= FNV_PRIME;
    }
    return hash;
}

#endif
