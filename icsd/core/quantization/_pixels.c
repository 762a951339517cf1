/* Compiled passes over the pixels of an RGB image, so that small-K quantization never needs the exact colour
 * histogram (a sort of every pixel): the binned colour histogram read straight from the pixels, and the exact
 * nearest palette entry of every pixel. The Python side is icsd/core/quantization/compiled.py.
 *
 * bin_pixels: one pass, each pixel adds itself to a dense table of 2^(3 bits) cubes (count and channel sums,
 *   uint32: exact below 2^24 pixels, which the caller guarantees); a bitmap of touched cubes lets the output
 *   and the reset visit only those, in key order. The table is static and reused (the GIL is held: calls never
 *   overlap), so no call pays for allocating and faulting in megabytes of fresh zeroed memory.
 *
 * sort_pixels: the exact colour histogram's sort, (colour << 32 | pixel index) of every pixel in ascending order,
 *   as a least-significant-digit radix sort of the 24-bit colours in two 12-bit passes (both digit counts in one
 *   read of the pixels). Radix passes are stable and pixels enter in index order, so the result is exactly that of
 *   sorting the uint64 keys (ties in colour are ordered by index), in a fraction of a comparison sort's time.
 *
 * used_entries: which palette entries an index image uses, without widening every index as np.bincount does.
 *
 * nearest_pixels: the palette is integer, so distances are exact integers. For each 5-bit cube (8x8x8 colour
 *   levels) met, the candidate entries are those whose distance to the nearest point of the cube is at most
 *   the smallest distance any entry has to the cube's farthest point; every other entry is strictly farther
 *   from every colour in the cube. Most cubes keep one or two candidates; a pixel then costs a table lookup
 *   and one comparison without a branch (see Cube), and otherwise a few distances. Ties go to the lowest
 *   index, as numpy.argmin does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BITS 6
#define CELL_BITS 5   /* cubes of the nearest-entry cache: 8 levels per channel (5 and 6 measured) */
#define COARSE_BITS 3 /* their parents, whose candidates are found among all entries: 32 levels */
#define MAX_PIXELS (1 << 24)

static uint32_t *table;   /* 4 uint32 per cube: count, sum r, sum g, sum b */
static uint64_t *touched; /* one bit per cube */

/* bin_pixels(pixels, n, bits) -> (keys int32, counts int64, sums int64 x 3) as bytearrays, keys ascending.
 * pixels: n x 3 uint8, 1 <= n < 2^24; a cube's key is (r >> s) << 2b | (g >> s) << b | (b >> s), s = 8 - bits. */
static PyObject *bin_pixels(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer bp = {0};
    Py_ssize_t n, bits;
    if (!PyArg_ParseTuple(args, "y*nn", &bp, &n, &bits))
        return NULL;
    PyObject *keys = NULL, *counts = NULL, *sums = NULL, *result = NULL;
    if (n < 1 || n >= MAX_PIXELS || bits < 1 || bits > MAX_BITS || bp.len != 3 * n) {
        PyErr_Format(PyExc_ValueError, "bin_pixels: need 1 <= n < 2^24 (got %zd), 1 <= bits <= %d (got %zd) and "
                     "3 n bytes (got %zd)", n, MAX_BITS, bits, bp.len);
        goto done;
    }
    if (!table) {
        table = calloc((size_t)4 << (3 * MAX_BITS), sizeof(uint32_t));
        touched = calloc((size_t)1 << (3 * MAX_BITS - 6), sizeof(uint64_t));
        if (!table || !touched) {
            free(table);
            free(touched);
            table = NULL;
            touched = NULL;
            PyErr_NoMemory();
            goto done;
        }
    }
    const uint8_t *px = bp.buf;
    const int s = 8 - (int)bits, b = (int)bits;
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < n; i++, px += 3) {
        uint32_t key = ((uint32_t)(px[0] >> s) << (2 * b)) | ((uint32_t)(px[1] >> s) << b) | (uint32_t)(px[2] >> s);
        uint32_t *cell = table + 4 * (size_t)key;
        if (!cell[0]) {
            touched[key >> 6] |= (uint64_t)1 << (key & 63);
            m++;
        }
        cell[0]++;
        cell[1] += px[0];
        cell[2] += px[1];
        cell[3] += px[2];
    }
    keys = PyByteArray_FromStringAndSize(NULL, 4 * m);
    counts = PyByteArray_FromStringAndSize(NULL, 8 * m);
    sums = PyByteArray_FromStringAndSize(NULL, 24 * m);
    int32_t *ok = keys ? (int32_t *)PyByteArray_AS_STRING(keys) : NULL;
    int64_t *oc = counts ? (int64_t *)PyByteArray_AS_STRING(counts) : NULL;
    int64_t *os = sums ? (int64_t *)PyByteArray_AS_STRING(sums) : NULL;
    Py_ssize_t j = 0;
    const size_t words = (size_t)1 << (3 * b > 6 ? 3 * b - 6 : 0);
    for (size_t w = 0; w < words; w++) { /* always reset, even when an output allocation failed */
        uint64_t bitsword = touched[w];
        touched[w] = 0;
        while (bitsword) {
            uint32_t key = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(bitsword));
            bitsword &= bitsword - 1;
            uint32_t *cell = table + 4 * (size_t)key;
            if (ok && oc && os) {
                ok[j] = (int32_t)key;
                oc[j] = cell[0];
                for (int d = 0; d < 3; d++)
                    os[3 * j + d] = cell[1 + d];
                j++;
            }
            memset(cell, 0, 4 * sizeof(uint32_t));
        }
    }
    if (ok && oc && os)
        result = PyTuple_Pack(3, keys, counts, sums);
done:
    Py_XDECREF(keys);
    Py_XDECREF(counts);
    Py_XDECREF(sums);
    PyBuffer_Release(&bp);
    return result;
}

/* The entries among `from` (n of them, ascending) that can be nearest to some colour of the cube with low corner
 * lo and side `side` levels: those whose distance to the nearest point of the cube is at most the smallest
 * distance any of them has to the cube's farthest point. Written to out as [count, index...], ascending. */
static void cube_candidates(const int *lo, int side, const uint8_t *pal, const uint16_t *from, int n, uint16_t *out)
{
    int32_t bound = INT32_MAX;
    for (int c = 0; c < n; c++) {
        int32_t far = 0;
        for (int d = 0; d < 3; d++) {
            int p = pal[3 * from[c] + d], a = lo[d], z = lo[d] + side - 1;
            int reach = p - a > z - p ? p - a : z - p;
            far += reach * reach;
        }
        if (far < bound)
            bound = far;
    }
    int count = 0;
    for (int c = 0; c < n; c++) {
        int32_t near = 0;
        for (int d = 0; d < 3; d++) {
            int p = pal[3 * from[c] + d], a = lo[d], z = lo[d] + side - 1;
            int gap = p < a ? a - p : (p > z ? p - z : 0);
            near += gap * gap;
        }
        if (near <= bound)
            out[1 + count++] = from[c];
    }
    out[0] = (uint16_t)count;
}

/* A growing array of candidate lists, [count, index...] each. */
typedef struct {
    uint16_t *v;
    size_t used, capacity;
} Pool;

static int pool_reserve(Pool *p, size_t more)
{
    if (p->used + more <= p->capacity)
        return 1;
    size_t capacity = p->capacity ? p->capacity : 1 << 16;
    while (p->used + more > capacity)
        capacity *= 2;
    uint16_t *grown = realloc(p->v, sizeof(uint16_t) * capacity);
    if (!grown)
        return 0;
    p->v = grown;
    p->capacity = capacity;
    return 1;
}

/* A cube of the nearest-entry cache. Up to two candidates need no branch per pixel: b is nearer than a exactly
 * when 2 p.(b - a) > |b|^2 - |a|^2 (integers), so the pixel's answer is one comparison and a select; with one
 * candidate b = a. Measured on the benchmark photos at K = 16: 67 % of pixels fall in one-candidate cubes,
 * 28 % in two-candidate ones, whose winner is a coin toss for a branch predictor, and 5 % in cubes of more. */
typedef struct {
    int16_t dir[3]; /* b - a */
    uint8_t a, b;   /* palette indices, a < b (or a == b) */
    int32_t bias;   /* |b|^2 - |a|^2 */
    int32_t list;   /* 0: not computed yet; -1: a/b/dir/bias hold the answer; > 0: pool offset + 1 of the list */
} Cube;

static void set_pair(Cube *cube, const uint8_t *pal, int a, int b)
{
    int32_t bias = 0;
    for (int d = 0; d < 3; d++) {
        int pa = pal[3 * a + d], pb = pal[3 * b + d];
        cube->dir[d] = (int16_t)(pb - pa);
        bias += pb * pb - pa * pa;
    }
    cube->a = (uint8_t)a;
    cube->b = (uint8_t)b;
    cube->bias = bias;
    cube->list = -1;
}

/* nearest_pixels(pixels, n, palette, k, out): out[i] = index of the palette entry nearest to pixel i (exact,
 * lowest index on ties). pixels: n x 3 uint8; palette: k x 3 uint8, 1 <= k <= 256; out: n uint8.
 * Candidates are found in two steps: over all k entries for the coarse cubes (COARSE_BITS per channel), then
 * over the coarse cube's candidates only for each fine cube (CELL_BITS) inside it. */
static PyObject *nearest_pixels(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer bp = {0}, bpal = {0}, bout = {0};
    Py_ssize_t n, k;
    if (!PyArg_ParseTuple(args, "y*ny*nw*", &bp, &n, &bpal, &k, &bout))
        return NULL;
    PyObject *result = NULL;
    Cube *cells = NULL;
    int32_t *coarse = NULL;
    Pool pool = {0};
    uint16_t all[256];
    if (n < 0 || k < 1 || k > 256 || bp.len != 3 * n || bpal.len != 3 * k || bout.len != n) {
        PyErr_Format(PyExc_ValueError, "nearest_pixels: need 1 <= k <= 256 (got %zd), 3 n pixel bytes, 3 k palette "
                     "bytes and n output bytes (n = %zd)", k, n);
        goto done;
    }
    for (int j = 0; j < k; j++)
        all[j] = (uint16_t)j;
    cells = calloc((size_t)1 << (3 * CELL_BITS), sizeof(Cube));
    coarse = calloc((size_t)1 << (3 * COARSE_BITS), sizeof(int32_t)); /* 0 = not computed, else offset + 1 */
    if (!cells || !coarse || !pool_reserve(&pool, 1)) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *px = bp.buf, *pal = bpal.buf;
    uint8_t *out = bout.buf;
    const int s = 8 - CELL_BITS, cs = 8 - COARSE_BITS;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++, px += 3) {
        uint32_t key = ((uint32_t)(px[0] >> s) << (2 * CELL_BITS)) | ((uint32_t)(px[1] >> s) << CELL_BITS) |
                       (uint32_t)(px[2] >> s);
        Cube *cube = cells + key;
        if (!cube->list) {
            uint32_t ckey = ((uint32_t)(px[0] >> cs) << (2 * COARSE_BITS)) |
                            ((uint32_t)(px[1] >> cs) << COARSE_BITS) | (uint32_t)(px[2] >> cs);
            if (!coarse[ckey]) {
                if (!pool_reserve(&pool, (size_t)k + 1)) {
                    failed = 1;
                    break;
                }
                int lo[3] = {(px[0] >> cs) << cs, (px[1] >> cs) << cs, (px[2] >> cs) << cs};
                cube_candidates(lo, 1 << cs, pal, all, (int)k, pool.v + pool.used);
                coarse[ckey] = (int32_t)pool.used + 1;
                pool.used += 1 + pool.v[pool.used];
            }
            size_t parent = (size_t)coarse[ckey] - 1;
            if (!pool_reserve(&pool, (size_t)pool.v[parent] + 1)) { /* may move pool.v: index, not pointer */
                failed = 1;
                break;
            }
            int lo[3] = {(px[0] >> s) << s, (px[1] >> s) << s, (px[2] >> s) << s};
            uint16_t *list = pool.v + pool.used;
            cube_candidates(lo, 1 << s, pal, pool.v + parent + 1, pool.v[parent], list);
            if (list[0] <= 2) {
                set_pair(cube, pal, list[1], list[list[0]]);
            } else {
                cube->list = (int32_t)pool.used + 1;
                pool.used += 1 + list[0];
            }
        }
        if (cube->list < 0) {
            int32_t dot = px[0] * cube->dir[0] + px[1] * cube->dir[1] + px[2] * cube->dir[2];
            uint8_t b_wins = (uint8_t)(2 * dot > cube->bias); /* strict: a tie keeps the lower index a */
            out[i] = (uint8_t)(cube->a ^ ((cube->a ^ cube->b) & -b_wins));
            continue;
        }
        const uint16_t *cand = pool.v + cube->list - 1;
        int best = cand[1];
        int32_t best_d = INT32_MAX;
        for (int c = 1; c <= cand[0]; c++) {
            const uint8_t *p = pal + 3 * cand[c];
            int dr = px[0] - p[0], dg = px[1] - p[1], db = px[2] - p[2];
            int32_t d = dr * dr + dg * dg + db * db;
            if (d < best_d) {
                best_d = d;
                best = cand[c];
            }
        }
        out[i] = (uint8_t)best;
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    free(cells);
    free(coarse);
    free(pool.v);
    PyBuffer_Release(&bp);
    PyBuffer_Release(&bpal);
    PyBuffer_Release(&bout);
    return result;
}

/* sort_pixels(pixels, n, out, scratch): out = the n uint64 (r << 48 | g << 40 | b << 32 | i) sorted ascending.
 * pixels: n x 3 uint8, n < 2^32; out and scratch: n uint64 each (scratch is overwritten). */
static PyObject *sort_pixels(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer bp = {0}, bout = {0}, bscratch = {0};
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*nw*w*", &bp, &n, &bout, &bscratch))
        return NULL;
    PyObject *result = NULL;
    if (n < 0 || (uint64_t)n > UINT32_MAX || bp.len != 3 * n || bout.len != 8 * n || bscratch.len != 8 * n) {
        PyErr_Format(PyExc_ValueError, "sort_pixels: need n < 2^32 (got %zd), 3 n pixel bytes and 8 n bytes for "
                     "out and scratch", n);
        goto done;
    }
    size_t *low = calloc(2 << 12, sizeof(size_t));
    if (!low) {
        PyErr_NoMemory();
        goto done;
    }
    size_t *high = low + (1 << 12);
    const uint8_t *px = bp.buf;
    uint64_t *out = bout.buf, *tmp = bscratch.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *p = px + 3 * i;
        low[((p[1] & 15u) << 8) | p[2]]++;
        high[((unsigned)p[0] << 4) | (p[1] >> 4)]++;
    }
    size_t at_low = 0, at_high = 0;
    for (int d = 0; d < (1 << 12); d++) { /* counts -> first position of each digit */
        size_t c = low[d];
        low[d] = at_low;
        at_low += c;
        c = high[d];
        high[d] = at_high;
        at_high += c;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *p = px + 3 * i;
        uint64_t colour = ((uint64_t)p[0] << 16) | ((uint64_t)p[1] << 8) | p[2];
        tmp[low[colour & 4095u]++] = (colour << 32) | (uint64_t)i;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t key = tmp[i];
        out[high[key >> 44]++] = key;
    }
    Py_END_ALLOW_THREADS
    free(low);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&bp);
    PyBuffer_Release(&bout);
    PyBuffer_Release(&bscratch);
    return result;
}

/* used_entries(indices, n, k, out): out[j] = 1 if some index is j, else 0, for j < k. indices: n uint8, each < k;
 * out: k bytes. One pass that only stores, several times faster than a bincount (which widens every index). */
static PyObject *used_entries(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer bi = {0}, bout = {0};
    Py_ssize_t n, k;
    if (!PyArg_ParseTuple(args, "y*nnw*", &bi, &n, &k, &bout))
        return NULL;
    PyObject *result = NULL;
    if (n < 0 || k < 1 || k > 256 || bi.len != n || bout.len != k) {
        PyErr_Format(PyExc_ValueError, "used_entries: need 1 <= k <= 256 (got %zd), n index bytes and k output "
                     "bytes (n = %zd)", k, n);
        goto done;
    }
    uint8_t seen[256] = {0};
    const uint8_t *idx = bi.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        seen[idx[i]] = 1;
    Py_END_ALLOW_THREADS
    for (Py_ssize_t j = k; j < 256; j++) {
        if (seen[j]) {
            PyErr_Format(PyExc_ValueError, "used_entries: index %zd is not below k = %zd", j, k);
            goto done;
        }
    }
    memcpy(bout.buf, seen, (size_t)k);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&bi);
    PyBuffer_Release(&bout);
    return result;
}

static PyMethodDef methods[] = {
    {"bin_pixels", bin_pixels, METH_VARARGS, "Binned colour histogram of RGB pixels (see icsd/core/quantization/compiled.py)."},
    {"nearest_pixels", nearest_pixels, METH_VARARGS, "Exact nearest palette entry per pixel (see compiled.py)."},
    {"sort_pixels", sort_pixels, METH_VARARGS, "Sorted (colour << 32 | index) keys of RGB pixels (see compiled.py)."},
    {"used_entries", used_entries, METH_VARARGS, "Which palette entries some pixel uses (see compiled.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_pixels", .m_doc = "Compiled per-pixel passes of icsd's quantizers.",
    .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__pixels(void) { return PyModule_Create(&module); }
