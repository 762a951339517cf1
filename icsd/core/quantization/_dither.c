/* Compiled kernels of apply: dithered mapping of pixels to a palette, and the squared error of a mapping.
 * The Python side is icsd/core/quantization/dither.py, whose NumPy/Python kernels are the reference these
 * must agree with exactly (tests/test_dither.py): same double arithmetic in the same order (built with
 * -ffp-contract=off, so no fused multiply-add changes a rounding), same tie rule (lowest index).
 *
 * Pixels are n x d uint8 (d = 1 grey, 3 RGB, 4 RGBA), the palette k x d doubles, weights n doubles in [0, 1]
 * (how much a pixel may be dithered: 1 in flat areas, 0 on edges and noisy texture; see dither.py).
 *
 * nearest: exact nearest entry of a point, searched outward from a guess in the order of channel 0, stopping
 *   when channel 0 alone is farther than the best distance found. Minimum (distance, index) wins.
 * diffuse: serpentine Floyd-Steinberg; the error a pixel receives is scaled by level * its weight before it is
 *   added, pixels are clamped a little outside 0..255, and errors larger than both a fixed bound and the chosen
 *   entry's gap to its nearest other entry are damped (both as libimagequant does: no streaks from odd pixels).
 * ordered: per pixel, its nearest entry c1 and the entry c2 nearest to the point along the pixel's error at
 *   least as far from c1 as c1's nearest other entry (and 3x the error); c2 is chosen when
 *   an 8x8 Bayer threshold is below the pixel's position between c1 and c2 (x level x weight): a two-colour
 *   mix whose average is the pixel, decided by position alone (no state: stable between runs and frames).
 * squared_error: sum over pixels of the squared distance to their entry, exact in 64-bit integers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_D 4
#define CLAMP_LOW (-25.5)
#define CLAMP_HIGH 280.5
#define QUIET 2.0         /* squared error below which a pixel is not dithered at all */
#define DAMP_ABOVE 1728.0 /* squared error (3 x 24^2) above which the diffused error is damped */
#define DAMPING 0.75

typedef struct {
    const double *pal; /* k x d */
    int k, d;
    int order[256]; /* entries by channel 0, ascending (stable) */
    int rank[256];  /* position of each entry in order */
} Palette;


static void palette_init(Palette *p, const double *pal, int k, int d)
{
    p->pal = pal;
    p->k = k;
    p->d = d;
    for (int i = 0; i < k; i++)
        p->order[i] = i;
    /* insertion sort: k <= 256, stable, no qsort_r portability question */
    for (int i = 1; i < k; i++) {
        int v = p->order[i], j = i - 1;
        while (j >= 0 && pal[(size_t)p->order[j] * d] > pal[(size_t)v * d]) {
            p->order[j + 1] = p->order[j];
            j--;
        }
        p->order[j + 1] = v;
    }
    for (int i = 0; i < k; i++)
        p->rank[p->order[i]] = i;
}

static inline double dist(const double *x, const double *c, int d)
{
    double s = (x[0] - c[0]) * (x[0] - c[0]);
    for (int j = 1; j < d; j++)
        s = s + (x[j] - c[j]) * (x[j] - c[j]);
    return s;
}

static inline int nearest(const Palette *p, const double *x, int guess)
{
    const int d = p->d;
    int best = guess;
    double best_d = dist(x, p->pal + (size_t)guess * d, d);
    int lo = p->rank[guess] - 1, hi = p->rank[guess] + 1;
    int lo_open = lo >= 0, hi_open = hi < p->k;
    while (lo_open || hi_open) {
        if (hi_open) {
            int e = p->order[hi];
            double g = p->pal[(size_t)e * d] - x[0];
            if (g * g > best_d) {
                hi_open = 0;
            } else {
                double de = dist(x, p->pal + (size_t)e * d, d);
                if (de < best_d || (de == best_d && e < best)) {
                    best = e;
                    best_d = de;
                }
                hi_open = ++hi < p->k;
            }
        }
        if (lo_open) {
            int e = p->order[lo];
            double g = x[0] - p->pal[(size_t)e * d];
            if (g * g > best_d) {
                lo_open = 0;
            } else {
                double de = dist(x, p->pal + (size_t)e * d, d);
                if (de < best_d || (de == best_d && e < best)) {
                    best = e;
                    best_d = de;
                }
                lo_open = --lo >= 0;
            }
        }
    }
    return best;
}

static int check(Py_buffer *px, Py_buffer *wt, Py_buffer *pal, Py_buffer *gap, Py_buffer *out, Py_ssize_t h,
                 Py_ssize_t w, Py_ssize_t d, Py_ssize_t k)
{
    Py_ssize_t n = h * w;
    if (h < 1 || w < 1 || d < 1 || d > MAX_D || k < 1 || k > 256 || px->len != n * d ||
        gap->len != k * (Py_ssize_t)sizeof(double) ||
        wt->len != n * (Py_ssize_t)sizeof(double) || pal->len != k * d * (Py_ssize_t)sizeof(double) ||
        out->len != n) {
        PyErr_SetString(PyExc_ValueError, "dither kernel: inconsistent buffer sizes");
        return 0;
    }
    return 1;
}

typedef struct {
    const uint8_t *px;  /* h x w x d */
    const double *wt;   /* h x w */
    const double *gap;  /* k: squared distance of each entry to its nearest other entry */
    Py_ssize_t h, w, d;
    double level;
    uint8_t *out;       /* h x w */
    double *errs;       /* diffuse: two rows of (w + 2) x d diffused errors */
} Job;

static void diffuse_rows(const Palette *pp, const Job *job)
{
    const Palette p = *pp;
    const uint8_t *px = job->px;
    const double *wt = job->wt, *gap = job->gap;
    const Py_ssize_t h = job->h, w = job->w, d = job->d;
    const double level = job->level;
    uint8_t *out = job->out;
    double *errs = job->errs;
    int last = 0;
    for (Py_ssize_t y = 0; y < h; y++) {
        int forward = (y & 1) == 0;
        double *this_err = errs + (forward ? 0 : (w + 2) * d);
        double *next_err = errs + (forward ? (w + 2) * d : 0);
        memset(next_err, 0, sizeof(double) * (w + 2) * d);
        for (Py_ssize_t step = 0; step < w; step++) {
            Py_ssize_t x = forward ? step : w - 1 - step;
            Py_ssize_t i = y * w + x;
            double *te = this_err + x * d; /* te[0..d) left of x, te[d..2d) at x, te[2d..3d) right */
            double *ne = next_err + x * d;
            double lv = level * wt[i];
            double s[MAX_D], spx[MAX_D], mag = 0.0;
            for (int j = 0; j < d; j++) {
                s[j] = te[d + j] * lv;
                mag = mag + s[j] * s[j];
            }
            for (int j = 0; j < d; j++) {
                double v = (double)px[i * d + j];
                if (mag >= QUIET) {
                    v = v + s[j];
                    v = v < CLAMP_LOW ? CLAMP_LOW : v > CLAMP_HIGH ? CLAMP_HIGH : v;
                }
                spx[j] = v;
            }
            int m = nearest(&p, spx, last);
            last = m;
            out[i] = (uint8_t)m;
            double e[MAX_D], e2 = 0.0;
            for (int j = 0; j < d; j++) {
                e[j] = spx[j] - p.pal[(size_t)m * d + j];
                e2 = e2 + e[j] * e[j];
            }
            double limit = gap[m] > DAMP_ABOVE ? gap[m] : DAMP_ABOVE;
            double damp = e2 > limit ? DAMPING : 1.0;
            for (int j = 0; j < d; j++) {
                double v = e[j] * damp;
                if (forward) {
                    te[2 * d + j] += v * (7.0 / 16.0);
                    ne[j] += v * (3.0 / 16.0);
                    ne[d + j] += v * (5.0 / 16.0);
                    ne[2 * d + j] = v * (1.0 / 16.0);
                } else {
                    te[j] += v * (7.0 / 16.0);
                    ne[j] = v * (1.0 / 16.0);
                    ne[d + j] += v * (5.0 / 16.0);
                    ne[2 * d + j] += v * (3.0 / 16.0);
                }
            }
        }
    }
}

static const uint8_t BAYER[8][8] = {
    {0, 32, 8, 40, 2, 34, 10, 42},  {48, 16, 56, 24, 50, 18, 58, 26}, {12, 44, 4, 36, 14, 46, 6, 38},
    {60, 28, 52, 20, 62, 30, 54, 22}, {3, 35, 11, 43, 1, 33, 9, 41},  {51, 19, 59, 27, 49, 17, 57, 25},
    {15, 47, 7, 39, 13, 45, 5, 37},  {63, 31, 55, 23, 61, 29, 53, 21},
};

static void ordered_rows(const Palette *pp, const Job *job)
{
    const Palette p = *pp;
    const uint8_t *px = job->px;
    const double *wt = job->wt, *gap = job->gap;
    const Py_ssize_t h = job->h, w = job->w, d = job->d;
    const double level = job->level;
    uint8_t *out = job->out;
    int last = 0;
    for (Py_ssize_t y = 0; y < h; y++) {
        for (Py_ssize_t x = 0; x < w; x++) {
            Py_ssize_t i = y * w + x;
            double v[MAX_D], far[MAX_D];
            for (int j = 0; j < d; j++)
                v[j] = (double)px[i * d + j];
            int c1 = nearest(&p, v, last);
            last = c1;
            out[i] = (uint8_t)c1;
            const double *a = p.pal + (size_t)c1 * d;
            double e2 = 0.0;
            for (int j = 0; j < d; j++) {
                double e = v[j] - a[j];
                e2 = e2 + e * e;
            }
            if (e2 < QUIET)
                continue;
            double reach = sqrt(gap[c1] / e2);
            reach = reach > 3.0 ? reach : 3.0;
            for (int j = 0; j < d; j++)
                far[j] = v[j] + reach * (v[j] - a[j]);
            int c2 = nearest(&p, far, c1);
            if (c2 == c1)
                continue;
            const double *b = p.pal + (size_t)c2 * d;
            double num = 0.0, den = 0.0;
            for (int j = 0; j < d; j++) {
                num = num + (v[j] - a[j]) * (b[j] - a[j]);
                den = den + (b[j] - a[j]) * (b[j] - a[j]);
            }
            double t = num / den;
            t = t < 0.0 ? 0.0 : t > 1.0 ? 1.0 : t;
            t = t * (level * wt[i]);
            if ((BAYER[y & 7][x & 7] + 0.5) / 64.0 < t)
                out[i] = (uint8_t)c2;
        }
    }
}

/* (pixels, weights, h, w, d, palette, gaps, k, level, out) -> None, for diffuse and ordered */
static PyObject *run(PyObject *args, int diffusion)
{
    Py_buffer bpx = {0}, bwt = {0}, bpal = {0}, bgap = {0}, bout = {0};
    Py_ssize_t h, w, d, k;
    double level;
    if (!PyArg_ParseTuple(args, "y*y*nnny*y*ndw*", &bpx, &bwt, &h, &w, &d, &bpal, &bgap, &k, &level, &bout))
        return NULL;
    PyObject *result = NULL;
    Job job = {bpx.buf, bwt.buf, bgap.buf, h, w, d, level, bout.buf, NULL};
    if (!check(&bpx, &bwt, &bpal, &bgap, &bout, h, w, d, k))
        goto done;
    if (diffusion && !(job.errs = calloc((size_t)2 * (w + 2) * d, sizeof(double)))) {
        PyErr_NoMemory();
        goto done;
    }
    Palette p;
    palette_init(&p, bpal.buf, (int)k, (int)d);
    Py_BEGIN_ALLOW_THREADS
    if (diffusion)
        diffuse_rows(&p, &job);
    else
        ordered_rows(&p, &job);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    free(job.errs);
    PyBuffer_Release(&bpx);
    PyBuffer_Release(&bwt);
    PyBuffer_Release(&bpal);
    PyBuffer_Release(&bgap);
    PyBuffer_Release(&bout);
    return result;
}

static PyObject *diffuse(PyObject *Py_UNUSED(self), PyObject *args) { return run(args, 1); }

static PyObject *ordered(PyObject *Py_UNUSED(self), PyObject *args) { return run(args, 0); }

/* squared_error(pixels, palette, indices, n, d) -> int: sum of squared channel differences, uint8 palette */
static PyObject *squared_error(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer bpx = {0}, bpal = {0}, bidx = {0};
    Py_ssize_t n, d;
    if (!PyArg_ParseTuple(args, "y*y*y*nn", &bpx, &bpal, &bidx, &n, &d))
        return NULL;
    PyObject *result = NULL;
    if (n < 1 || d < 1 || d > MAX_D || bpx.len != n * d || bidx.len != n || bpal.len % d || bpal.len / d > 256) {
        PyErr_SetString(PyExc_ValueError, "squared_error: inconsistent buffer sizes");
        goto done;
    }
    const uint8_t *px = bpx.buf, *pal = bpal.buf, *idx = bidx.buf;
    const Py_ssize_t k = bpal.len / d;
    uint64_t total = 0;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (idx[i] >= k) {
            bad = 1;
            break;
        }
        const uint8_t *c = pal + (size_t)idx[i] * d;
        const uint8_t *x = px + i * d;
        uint32_t s = 0;
        for (int j = 0; j < d; j++) {
            int32_t e = (int32_t)x[j] - (int32_t)c[j];
            s += (uint32_t)(e * e);
        }
        total += s;
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "squared_error: an index is outside the palette");
        goto done;
    }
    result = PyLong_FromUnsignedLongLong(total);
done:
    PyBuffer_Release(&bpx);
    PyBuffer_Release(&bpal);
    PyBuffer_Release(&bidx);
    return result;
}

static PyMethodDef methods[] = {
    {"diffuse", diffuse, METH_VARARGS, "Edge-aware serpentine error diffusion to a palette."},
    {"ordered", ordered, METH_VARARGS, "Bayer-threshold two-colour mixing to a palette."},
    {"squared_error", squared_error, METH_VARARGS, "Sum of squared differences between pixels and their entries."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_dither", .m_doc = "Compiled kernels of icsd's apply step.", .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__dither(void) { return PyModule_Create(&module); }
