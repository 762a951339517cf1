/* Compiled fast path of our weighted k-means over RGB colours: Lloyd iterations with Hamerly-style bounds and
 * neighbour-sorted candidate scans, plus the exact nearest-centre assignment. The Python side is
 * icsd/core/quantization/compiled.py; the NumPy kernels (icsd/core/quantization/lloyd.py) stay the reference and the fallback.
 *
 * Why C: in NumPy every Lloyd iteration is a dozen array passes and temporaries, however few points need
 * work; here an iteration touches each point once (two bound updates and a compare) and computes distances
 * only for the few whose bounds overlap.
 *
 * Pruning (all exact, by the triangle inequality):
 *   - per point an upper bound u on the distance to its centre a and a lower bound l on the distance to every
 *     other centre; when centres move, u grows by a's shift and l shrinks by the largest shift among a's
 *     listed neighbours (unlisted centres are at least reach[a] - u away). A point needs work only when
 *     u > max(l, half[a]), half[a] being half the distance from a to its nearest other centre (Hamerly).
 *   - sort-means candidate scan: each centre lists its nearest NEIGH other centres by increasing distance cc.
 *     For a point at distance u from a, centre j is at least cc(a, j) - u away, so the scan stops at the first
 *     listed j with cc - u >= the second-best distance so far; past the list, reach[a] (the distance to the
 *     nearest unlisted centre) proves the rest, else every centre is compared.
 *   - the lists are rebuilt (K^2 work) only when some centre has drifted more than REBUILD_DRIFT of the mean
 *     centre spacing since the last build; until then every listed distance is used minus the drift of both
 *     ends (slack[a] = drift[a] + largest drift), which keeps each bound a valid lower bound.
 *
 * Cluster moments are int64 (weights are pixel counts, sums are integer colours times counts): moving a point
 * between clusters is exact, so an emptied cluster has exactly zero mass and the returned centres are the
 * exact weighted means of the returned partition.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NEIGH 32           /* candidate centres listed per centre, nearest first (16-64 measured) */
#define REBUILD_DRIFT 0.3  /* rebuild the lists when the largest drift exceeds this much of the mean half-gap */

static inline double sq3(const double *a, const double *b)
{
    double x = a[0] - b[0], y = a[1] - b[1], z = a[2] - b[2];
    return x * x + y * y + z * z;
}

/* Is every centre at distance >= gap provably no nearer than squared distance s2? (gap may be negative) */
static inline int beyond(double gap, double s2) { return gap > 0.0 && gap * gap >= s2; }

typedef struct {
    Py_ssize_t k;
    int listed;      /* min(NEIGH, k - 1) */
    double *c;       /* k x 3 current centres */
    double *c0;      /* k x 3 centres when the lists were built */
    int32_t *neigh;  /* k x (listed + 1) nearest other centres at build time, nearest first */
    double *cc;      /* their distances at build time */
    double *reach0;  /* k: distance to the nearest unlisted centre at build time (inf when all are listed) */
    double *slack;   /* k: drift of a plus the largest drift: what build-time distances from a may have lost */
    double *half;    /* k: a lower bound on half the distance from a to its nearest other centre */
    double *scratch; /* 5k */
    double mean_half0;
} Centres;

static int centres_alloc(Centres *cs, double *c, Py_ssize_t k)
{
    size_t n = (size_t)k;
    cs->k = k;
    cs->listed = (int)(k - 1 < NEIGH ? k - 1 : NEIGH);
    cs->c = c;
    cs->c0 = malloc(sizeof(double) * 3 * n);
    cs->neigh = malloc(sizeof(int32_t) * n * (size_t)(cs->listed + 1));
    cs->cc = malloc(sizeof(double) * n * (size_t)(cs->listed + 1));
    cs->reach0 = malloc(sizeof(double) * n);
    cs->slack = malloc(sizeof(double) * n);
    cs->half = malloc(sizeof(double) * n);
    cs->scratch = malloc(sizeof(double) * 5 * n);
    return cs->c0 && cs->neigh && cs->cc && cs->reach0 && cs->slack && cs->half && cs->scratch;
}

static void centres_free(Centres *cs)
{
    free(cs->c0);
    free(cs->neigh);
    free(cs->cc);
    free(cs->reach0);
    free(cs->slack);
    free(cs->half);
    free(cs->scratch);
}

/* The value of rank r (0-based) among v[0..n); reorders v (Hoare's quickselect). */
static double select_rank(double *v, Py_ssize_t n, Py_ssize_t r)
{
    Py_ssize_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = v[lo + (hi - lo) / 2];
        Py_ssize_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                double t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        if (r <= j)
            hi = j;
        else if (r >= i)
            lo = i;
        else
            break;
    }
    return v[r];
}

/* Build the sorted neighbour lists at the current centres (rows of listed + 1; the extra entry is the reach):
 * per centre, squared distances to all centres in one vectorisable pass over coordinate columns, a
 * quickselect for the cut-off, then an insertion sort of the few kept. */
static void centres_index(Centres *cs)
{
    const Py_ssize_t k = cs->k;
    const int row = cs->listed + 1;
    double *cx = cs->scratch, *cy = cx + k, *cz = cy + k, *sq = cz + k, *tmp = sq + k;
    for (Py_ssize_t j = 0; j < k; j++) {
        cx[j] = cs->c[3 * j];
        cy[j] = cs->c[3 * j + 1];
        cz[j] = cs->c[3 * j + 2];
    }
    double half_sum = 0.0;
    for (Py_ssize_t a = 0; a < k; a++) {
        const double ax = cx[a], ay = cy[a], az = cz[a];
        for (Py_ssize_t j = 0; j < k; j++) {
            double x = cx[j] - ax, y = cy[j] - ay, z = cz[j] - az;
            sq[j] = x * x + y * y + z * z;
        }
        sq[a] = INFINITY;
        int take = (int)(k - 1 < row ? k - 1 : row);
        double cut = INFINITY;
        if (take < k - 1) {
            memcpy(tmp, sq, sizeof(double) * (size_t)k);
            cut = select_rank(tmp, k, take - 1);
        }
        int32_t *nb = cs->neigh + a * row;
        double *cc = cs->cc + a * row;
        int n = 0;
        for (Py_ssize_t j = 0; j < k && n < take; j++) {
            if (j == a || sq[j] > cut)
                continue;
            int t = n++;
            while (t > 0 && cc[t - 1] > sq[j]) {
                cc[t] = cc[t - 1];
                nb[t] = nb[t - 1];
                t--;
            }
            cc[t] = sq[j];
            nb[t] = (int32_t)j;
        }
        for (int t = 0; t < n; t++)
            cc[t] = sqrt(cc[t]);
        cs->reach0[a] = (k - 1 > cs->listed) ? cc[cs->listed] : INFINITY;
        cs->half[a] = n ? 0.5 * cc[0] : INFINITY;
        cs->slack[a] = 0.0;
        half_sum += n ? 0.5 * cc[0] : 0.0;
    }
    memcpy(cs->c0, cs->c, sizeof(double) * 3 * (size_t)k);
    cs->mean_half0 = half_sum / (double)k;
}

/* After the centres moved: the build-time distances lose the drift of both ends; rebuild when that grows. */
static void centres_moved(Centres *cs)
{
    double top = 0.0;
    for (Py_ssize_t a = 0; a < cs->k; a++) {
        cs->slack[a] = sqrt(sq3(cs->c + 3 * a, cs->c0 + 3 * a));
        top = cs->slack[a] > top ? cs->slack[a] : top;
    }
    if (top > REBUILD_DRIFT * cs->mean_half0) {
        centres_index(cs);
        return;
    }
    const int row = cs->listed + 1;
    for (Py_ssize_t a = 0; a < cs->k; a++) {
        cs->slack[a] += top;
        cs->half[a] = cs->listed ? 0.5 * (cs->cc[a * row] - cs->slack[a]) : INFINITY;
    }
}

/* Nearest centre to x, given its exact distance u to centre a: returns it, with the distance to it and to the
 * second nearest (a lower bound on every other centre's distance). Compares squared distances. */
static Py_ssize_t nearest2(const Centres *cs, const double *x, Py_ssize_t a, double u, double *d1, double *d2)
{
    const int row = cs->listed + 1;
    const int32_t *nb = cs->neigh + a * row;
    const double *cc = cs->cc + a * row;
    const double lost = cs->slack[a] + u;
    Py_ssize_t best = a;
    double s1 = u * u, s2 = INFINITY;
    int proven = 0;
    for (int t = 0; t < cs->listed; t++) {
        if (beyond(cc[t] - lost, s2)) {
            proven = 1;
            break;
        }
        double sj = sq3(x, cs->c + 3 * (Py_ssize_t)nb[t]);
        if (sj < s1) {
            s2 = s1;
            s1 = sj;
            best = nb[t];
        } else if (sj < s2) {
            s2 = sj;
        }
    }
    if (!proven && !beyond(cs->reach0[a] - lost, s2)) { /* the list could not prove it: compare every centre */
        best = 0;
        s1 = s2 = INFINITY;
        for (Py_ssize_t j = 0; j < cs->k; j++) {
            double sj = sq3(x, cs->c + 3 * j);
            if (sj < s1) {
                s2 = s1;
                s1 = sj;
                best = j;
            } else if (sj < s2) {
                s2 = sj;
            }
        }
    }
    *d1 = sqrt(s1);
    *d2 = sqrt(s2);
    return best;
}

typedef struct {
    Py_buffer x, w, wx, c, labels;
} Buffers;

static void buffers_release(Buffers *b)
{
    PyBuffer_Release(&b->x);
    PyBuffer_Release(&b->w);
    PyBuffer_Release(&b->wx);
    PyBuffer_Release(&b->c);
    PyBuffer_Release(&b->labels);
}

static int check_len(const Py_buffer *b, Py_ssize_t items, Py_ssize_t itemsize, const char *name)
{
    if (b->len != items * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd bytes, got %zd", name, items * itemsize, b->len);
        return 0;
    }
    return 1;
}

static int check_labels(const int32_t *labels, Py_ssize_t m, Py_ssize_t k)
{
    for (Py_ssize_t i = 0; i < m; i++) {
        if (labels[i] < 0 || labels[i] >= k) {
            PyErr_Format(PyExc_ValueError, "label %d of point %zd is not a centre index", (int)labels[i], i);
            return 0;
        }
    }
    return 1;
}

/* assign(x, centres, labels, m, k, warm): labels[i] = exact nearest centre to point i (x: m x 3 float64,
 * centres: k x 3 float64, labels: m int32). With warm, the current labels are the starting guesses: cheap
 * when nearly right, as after rounding converged centres. */
static PyObject *assign(PyObject *Py_UNUSED(self), PyObject *args)
{
    Buffers b = {0};
    Py_ssize_t m, k;
    int warm;
    if (!PyArg_ParseTuple(args, "y*y*w*nnp", &b.x, &b.c, &b.labels, &m, &k, &warm))
        return NULL;
    PyObject *result = NULL;
    Centres cs = {0};
    if (k < 1 || m < 0) {
        PyErr_SetString(PyExc_ValueError, "assign: need k >= 1 and m >= 0");
        goto done;
    }
    if (!check_len(&b.x, 3 * m, 8, "x") || !check_len(&b.c, 3 * k, 8, "centres") ||
        !check_len(&b.labels, m, 4, "labels") || (warm && !check_labels(b.labels.buf, m, k)))
        goto done;
    if (!centres_alloc(&cs, (double *)b.c.buf, k)) {
        PyErr_NoMemory();
        goto done;
    }
    const double *x = b.x.buf;
    int32_t *labels = b.labels.buf;
    Py_BEGIN_ALLOW_THREADS
    centres_index(&cs);
    for (Py_ssize_t i = 0; i < m; i++) {
        Py_ssize_t a = warm ? labels[i] : 0;
        double u = sqrt(sq3(x + 3 * i, cs.c + 3 * a)), d1, d2;
        if (u > cs.half[a])
            labels[i] = (int32_t)nearest2(&cs, x + 3 * i, a, u, &d1, &d2);
        else
            labels[i] = (int32_t)a;
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    centres_free(&cs);
    buffers_release(&b);
    return result;
}

typedef struct {
    Py_ssize_t m, k;
    const double *x;
    const int64_t *w, *wx;
    int32_t *labels;
    double *upper, *lower;
    int64_t *mass, *sums;
    double *target, *shift;
    char *chosen;
} Lloyd;

static void lloyd_free(Lloyd *s)
{
    free(s->upper);
    free(s->lower);
    free(s->mass);
    free(s->sums);
    free(s->target);
    free(s->shift);
    free(s->chosen);
}

static int lloyd_alloc(Lloyd *s)
{
    size_t m = (size_t)s->m, k = (size_t)s->k;
    s->upper = malloc(sizeof(double) * m);
    s->lower = malloc(sizeof(double) * m);
    s->mass = malloc(sizeof(int64_t) * k);
    s->sums = malloc(sizeof(int64_t) * 3 * k);
    s->target = malloc(sizeof(double) * 3 * k);
    s->shift = malloc(sizeof(double) * k);
    s->chosen = malloc(m);
    return s->upper && s->lower && s->mass && s->sums && s->target && s->shift && s->chosen;
}

static void moments(Lloyd *s)
{
    memset(s->mass, 0, sizeof(int64_t) * (size_t)s->k);
    memset(s->sums, 0, sizeof(int64_t) * 3 * (size_t)s->k);
    for (Py_ssize_t i = 0; i < s->m; i++) {
        Py_ssize_t a = s->labels[i];
        s->mass[a] += s->w[i];
        for (int j = 0; j < 3; j++)
            s->sums[3 * a + j] += s->wx[3 * i + j];
    }
}

/* SSE of the partition with every centre at its mean: sum w |x|^2 - sum |S|^2 / mass. */
static double partition_sse(const Lloyd *s, double total_xx, int *all_filled)
{
    double fit = 0.0;
    *all_filled = 1;
    for (Py_ssize_t a = 0; a < s->k; a++) {
        if (s->mass[a] == 0) {
            *all_filled = 0;
            continue;
        }
        double q = 0.0;
        for (int j = 0; j < 3; j++) {
            double v = (double)s->sums[3 * a + j];
            q += v * v;
        }
        fit += q / (double)s->mass[a];
    }
    return total_xx - fit;
}

/* Move each empty cluster's target onto a distinct point with the largest weighted error bound w * u^2. */
static void reseed(Lloyd *s)
{
    memset(s->chosen, 0, (size_t)s->m);
    for (Py_ssize_t a = 0; a < s->k; a++) {
        if (s->mass[a] != 0)
            continue;
        Py_ssize_t worst = -1;
        double worst_err = -1.0;
        for (Py_ssize_t i = 0; i < s->m; i++) {
            double e = (double)s->w[i] * s->upper[i] * s->upper[i];
            if (!s->chosen[i] && e > worst_err) {
                worst_err = e;
                worst = i;
            }
        }
        if (worst < 0)
            return;
        s->chosen[worst] = 1;
        memcpy(s->target + 3 * a, s->x + 3 * worst, sizeof(double) * 3);
    }
}

/* Move the centres to target and loosen every bound by how far they moved: the upper bound by the own
 * centre's shift; the lower bound by the largest shift among the own centre's listed neighbours, and for
 * the unlisted centres by the reach (each is at least reach - slack - upper away). */
static void move_centres(Lloyd *s, Centres *cs)
{
    double top = 0.0;
    for (Py_ssize_t a = 0; a < s->k; a++) {
        s->shift[a] = sqrt(sq3(s->target + 3 * a, cs->c + 3 * a));
        top = s->shift[a] > top ? s->shift[a] : top;
    }
    if (top == 0.0)
        return;
    memcpy(cs->c, s->target, sizeof(double) * 3 * (size_t)s->k);
    centres_moved(cs);
    const int row = cs->listed + 1;
    double *listmax = s->target; /* reused: the targets are in cs->c now */
    for (Py_ssize_t a = 0; a < s->k; a++) {
        double most = 0.0;
        for (int t = 0; t < cs->listed; t++) {
            double sh = s->shift[cs->neigh[a * row + t]];
            most = sh > most ? sh : most;
        }
        listmax[a] = most;
    }
    for (Py_ssize_t i = 0; i < s->m; i++) {
        Py_ssize_t a = s->labels[i];
        double u = s->upper[i] + s->shift[a];
        double l = s->lower[i] - listmax[a], far = cs->reach0[a] - cs->slack[a] - u;
        s->upper[i] = u;
        s->lower[i] = l < far ? l : far;
    }
}

/* Re-check the points whose bounds overlap and move the ones whose nearest centre changed, keeping the
 * moments exact. Bounds must be valid for the current centres. Returns how many points changed cluster. */
static Py_ssize_t reassign(Lloyd *s, const Centres *cs)
{
    Py_ssize_t changed = 0;
    for (Py_ssize_t i = 0; i < s->m; i++) {
        Py_ssize_t a = s->labels[i];
        double z = s->lower[i] > cs->half[a] ? s->lower[i] : cs->half[a];
        if (s->upper[i] <= z)
            continue;
        const double *xi = s->x + 3 * i;
        double u = sqrt(sq3(xi, cs->c + 3 * a));
        s->upper[i] = u;
        if (u <= z)
            continue;
        double d1, d2;
        Py_ssize_t b = nearest2(cs, xi, a, u, &d1, &d2);
        s->upper[i] = d1;
        s->lower[i] = d2;
        if (b != a) {
            s->labels[i] = (int32_t)b;
            s->mass[a] -= s->w[i];
            s->mass[b] += s->w[i];
            for (int j = 0; j < 3; j++) {
                s->sums[3 * a + j] -= s->wx[3 * i + j];
                s->sums[3 * b + j] += s->wx[3 * i + j];
            }
            changed++;
        }
    }
    return changed;
}

/* The Lloyd loop (see `lloyd` below); runs without the GIL. Returns the iterations done. */
static int lloyd_run(Lloyd *s, Centres *cs, int warm, double tol, int max_iter, double relax)
{
    const Py_ssize_t k = s->k;
    centres_index(cs);
    double total_xx = 0.0;
    for (Py_ssize_t i = 0; i < s->m; i++) {
        const double *xi = s->x + 3 * i;
        total_xx += (double)s->w[i] * (xi[0] * xi[0] + xi[1] * xi[1] + xi[2] * xi[2]);
        if (warm) { /* exact distance to the given centre; nothing known of the others yet */
            s->upper[i] = sqrt(sq3(xi, cs->c + 3 * (Py_ssize_t)s->labels[i]));
            s->lower[i] = 0.0;
        } else {
            double d1, d2;
            s->labels[i] = (int32_t)nearest2(cs, xi, 0, sqrt(sq3(xi, cs->c)), &d1, &d2);
            s->upper[i] = d1;
            s->lower[i] = d2;
        }
    }
    moments(s);
    double prev = INFINITY;
    int iterations;
    for (iterations = 1; iterations <= max_iter; iterations++) {
        int filled;
        double sse = partition_sse(s, total_xx, &filled);
        if (relax != 1.0 && sse > prev) /* an overshoot cost more than it gained: plain Lloyd from here */
            relax = 1.0;
        else if (prev - sse <= tol * sse)
            break;
        prev = sse;
        for (Py_ssize_t a = 0; a < k; a++) {
            for (int j = 0; j < 3; j++) {
                double c = cs->c[3 * a + j];
                double mean = s->mass[a] ? (double)s->sums[3 * a + j] / (double)s->mass[a] : c;
                s->target[3 * a + j] = c + relax * (mean - c);
            }
        }
        if (!filled) {
            reseed(s);
            prev = INFINITY;
        }
        move_centres(s, cs);
        if (reassign(s, cs) == 0 && relax == 1.0)
            break; /* the exact means reproduce the partition: a fixed point of Lloyd */
    }
    for (Py_ssize_t a = 0; a < k; a++) { /* the exact means of the returned partition */
        for (int j = 0; j < 3 && s->mass[a]; j++)
            cs->c[3 * a + j] = (double)s->sums[3 * a + j] / (double)s->mass[a];
    }
    return iterations > max_iter ? max_iter : iterations;
}

/* lloyd(x, w, wx, centres, labels, m, k, warm, tol, max_iter, relax) -> iterations
 *
 * Weighted k-means of m points x (m x 3 float64) with int64 weights w and exact int64 weighted sums wx (m x 3),
 * from k >= 2 centres (k x 3 float64, updated in place to the final weighted means). With warm, labels (m
 * int32) hold the starting partition; otherwise every point starts at its nearest centre. Stops when the
 * partition's SSE improves by at most tol (relative), when no point moves, or after max_iter iterations.
 * Centres move `relax` times the Lloyd step (over-relaxation); an overshoot that raises the SSE switches to
 * plain steps. */
static PyObject *lloyd(PyObject *Py_UNUSED(self), PyObject *args)
{
    Buffers b = {0};
    Py_ssize_t m, k;
    int warm, max_iter;
    double tol, relax;
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*nnpdid", &b.x, &b.w, &b.wx, &b.c, &b.labels, &m, &k, &warm, &tol,
                          &max_iter, &relax))
        return NULL;
    PyObject *result = NULL;
    Centres cs = {0};
    Lloyd s = {.m = m, .k = k};
    if (k < 2 || m < 1) {
        PyErr_SetString(PyExc_ValueError, "lloyd: need k >= 2 centres and m >= 1 points");
        goto done;
    }
    if (!check_len(&b.x, 3 * m, 8, "x") || !check_len(&b.w, m, 8, "w") || !check_len(&b.wx, 3 * m, 8, "wx") ||
        !check_len(&b.c, 3 * k, 8, "centres") || !check_len(&b.labels, m, 4, "labels") ||
        (warm && !check_labels(b.labels.buf, m, k)))
        goto done;
    s.x = b.x.buf;
    s.w = b.w.buf;
    s.wx = b.wx.buf;
    s.labels = b.labels.buf;
    if (!lloyd_alloc(&s) || !centres_alloc(&cs, (double *)b.c.buf, k)) {
        PyErr_NoMemory();
        goto done;
    }
    int iterations;
    Py_BEGIN_ALLOW_THREADS
    iterations = lloyd_run(&s, &cs, warm, tol, max_iter, relax);
    Py_END_ALLOW_THREADS
    result = PyLong_FromLong(iterations);
done:
    lloyd_free(&s);
    centres_free(&cs);
    buffers_release(&b);
    return result;
}

/* ---- seeding: greedy SSE-optimal binary splitting of binned colours (Wu's rule) ---- */

typedef struct {
    Py_ssize_t lo, hi; /* range of the part's points in the order array */
    int64_t mass, sums[3];
    double sq, sse;
    int splittable;
} Part;

static void part_sse(Part *p)
{
    double fit = 0.0;
    for (int j = 0; j < 3; j++)
        fit += (double)p->sums[j] * (double)p->sums[j];
    p->sse = p->mass ? p->sq - fit / (double)p->mass : 0.0;
}

/* Split part p at the axis-aligned plane between bin coordinates with the lowest total SSE of the halves;
 * the right half becomes part q. Returns 0 when no plane separates anything. */
static int split_part(Part *parts, Py_ssize_t p, Py_ssize_t q, Py_ssize_t *order, const uint8_t *coords,
                      const int64_t *w, const int64_t *wx, const double *wxx, Py_ssize_t levels, double *table)
{
    Part *pp = parts + p;
    double best = INFINITY, best_w = 0, best_s[3] = {0}, best_q = 0;
    int best_axis = -1, best_cut = 0;
    for (int axis = 0; axis < 3; axis++) {
        memset(table, 0, sizeof(double) * 5 * (size_t)levels); /* per level: w, s0, s1, s2, q */
        for (Py_ssize_t t = pp->lo; t < pp->hi; t++) {
            Py_ssize_t i = order[t];
            double *cell = table + 5 * coords[3 * i + axis];
            cell[0] += (double)w[i];
            cell[1] += (double)wx[3 * i];
            cell[2] += (double)wx[3 * i + 1];
            cell[3] += (double)wx[3 * i + 2];
            cell[4] += wxx[i];
        }
        double lw = 0, ls[3] = {0, 0, 0}, lq = 0;
        for (Py_ssize_t c = 0; c + 1 < levels; c++) {
            const double *cell = table + 5 * c;
            lw += cell[0];
            ls[0] += cell[1];
            ls[1] += cell[2];
            ls[2] += cell[3];
            lq += cell[4];
            double rw = (double)pp->mass - lw;
            if (lw <= 0.0 || rw <= 0.0)
                continue;
            double r0 = (double)pp->sums[0] - ls[0], r1 = (double)pp->sums[1] - ls[1],
                   r2 = (double)pp->sums[2] - ls[2];
            double cost = (lq - (ls[0] * ls[0] + ls[1] * ls[1] + ls[2] * ls[2]) / lw) +
                          ((pp->sq - lq) - (r0 * r0 + r1 * r1 + r2 * r2) / rw);
            if (cost < best) {
                best = cost;
                best_axis = axis;
                best_cut = (int)c;
                best_w = lw;
                best_q = lq;
                memcpy(best_s, ls, sizeof ls);
            }
        }
    }
    if (best_axis < 0)
        return 0;
    Py_ssize_t i = pp->lo, j = pp->hi - 1; /* partition: coordinate <= cut to the left */
    while (i <= j) {
        if (coords[3 * order[i] + best_axis] <= best_cut) {
            i++;
        } else {
            Py_ssize_t t = order[i];
            order[i] = order[j];
            order[j--] = t;
        }
    }
    Part *qq = parts + q;
    qq->lo = i;
    qq->hi = pp->hi;
    pp->hi = i;
    qq->mass = pp->mass - (int64_t)llround(best_w);
    pp->mass -= qq->mass;
    for (int d = 0; d < 3; d++) {
        int64_t left = (int64_t)llround(best_s[d]);
        qq->sums[d] = pp->sums[d] - left;
        pp->sums[d] = left;
    }
    qq->sq = pp->sq - best_q;
    pp->sq = best_q;
    qq->splittable = 1;
    part_sse(pp);
    part_sse(qq);
    return 1;
}

/* split(coords, w, wx, labels, m, k, levels) -> parts
 *
 * Deterministic k-means seeding: starting from one part holding all m binned points (coords: m x 3 uint8 bin
 * coordinates below `levels`; int64 weights w and weighted sums wx), repeatedly split the part with the
 * largest SSE at its best axis-aligned plane, until k parts or nothing splits. Writes each point's part to
 * labels (m int32) and returns the number of parts. Sums are exact in double (integers below 2^53). */
static PyObject *split(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer bc = {0}, bw = {0}, bwx = {0}, bl = {0};
    Py_ssize_t m, k, levels;
    if (!PyArg_ParseTuple(args, "y*y*y*w*nnn", &bc, &bw, &bwx, &bl, &m, &k, &levels))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t *order = NULL;
    Part *parts = NULL;
    double *wxx = NULL, *table = NULL;
    if (m < 1 || k < 1 || levels < 2 || levels > 256) {
        PyErr_SetString(PyExc_ValueError, "split: need m >= 1, k >= 1 and 2 <= levels <= 256");
        goto done;
    }
    if (!check_len(&bc, 3 * m, 1, "coords") || !check_len(&bw, m, 8, "w") || !check_len(&bwx, 3 * m, 8, "wx") ||
        !check_len(&bl, m, 4, "labels"))
        goto done;
    const uint8_t *coords = bc.buf;
    const int64_t *w = bw.buf, *wx = bwx.buf;
    int32_t *labels = bl.buf;
    for (Py_ssize_t i = 0; i < 3 * m; i++) {
        if (coords[i] >= levels) {
            PyErr_Format(PyExc_ValueError, "split: bin coordinate %d is not below %zd", (int)coords[i], levels);
            goto done;
        }
    }
    order = malloc(sizeof(Py_ssize_t) * (size_t)m);
    parts = calloc((size_t)k, sizeof(Part));
    wxx = malloc(sizeof(double) * (size_t)m);
    table = malloc(sizeof(double) * 5 * (size_t)levels);
    if (!order || !parts || !wxx || !table) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t n = 1;
    Py_BEGIN_ALLOW_THREADS
    Part *all = parts;
    all->lo = 0;
    all->hi = m;
    all->splittable = 1;
    for (Py_ssize_t i = 0; i < m; i++) {
        order[i] = i;
        double q = 0.0;
        for (int d = 0; d < 3; d++) {
            all->sums[d] += wx[3 * i + d];
            q += (double)wx[3 * i + d] * (double)wx[3 * i + d];
        }
        all->mass += w[i];
        wxx[i] = w[i] ? q / (double)w[i] : 0.0; /* w |mean|^2 */
        all->sq += wxx[i];
    }
    part_sse(all);
    while (n < k) {
        Py_ssize_t p = -1;
        for (Py_ssize_t t = 0; t < n; t++) {
            if (parts[t].splittable && parts[t].hi - parts[t].lo > 1 && (p < 0 || parts[t].sse > parts[p].sse))
                p = t;
        }
        if (p < 0)
            break;
        if (split_part(parts, p, n, order, coords, w, wx, wxx, levels, table))
            n++;
        else
            parts[p].splittable = 0;
    }
    for (Py_ssize_t t = 0; t < n; t++) {
        for (Py_ssize_t i = parts[t].lo; i < parts[t].hi; i++)
            labels[order[i]] = (int32_t)t;
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(n);
done:
    free(order);
    free(parts);
    free(wxx);
    free(table);
    PyBuffer_Release(&bc);
    PyBuffer_Release(&bw);
    PyBuffer_Release(&bwx);
    PyBuffer_Release(&bl);
    return result;
}

static PyMethodDef methods[] = {
    {"lloyd", lloyd, METH_VARARGS, "Weighted Lloyd k-means over RGB points (see icsd/core/quantization/compiled.py)."},
    {"assign", assign, METH_VARARGS, "Exact nearest-centre labels (see icsd/core/quantization/compiled.py)."},
    {"split", split, METH_VARARGS, "Seeding by greedy binary splitting (see icsd/core/quantization/compiled.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_lloyd", .m_doc = "Compiled k-means kernels of icsd.", .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__lloyd(void) { return PyModule_Create(&module); }
