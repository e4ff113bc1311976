"""The C entry runtime every ahead-of-time library includes (generic, data-driven; see the comment)."""

RUNTIME = r"""/* The entry runtime of a tcomp ahead-of-time library (tcomp/aot/runtime.c).
 *
 * Included once into every generated library source, after the per-function descriptors'
 * type definitions.  Every function here is static and data-driven: a generated entry fills
 * the input pointers and dims of its program in program order and calls tc_call / tc_shapes
 * / tc_dlpack with its descriptor.  Nothing here is mutable global state: the registers and
 * dims live on the caller's stack, the workspace is the caller's or allocated per call, and
 * the last error message is one buffer per thread (a pthread key, so no TLS relocations and
 * no NEEDED on the dynamic loader).
 */

#define TC_ERR_CAP 1024
#define TC_MAYBE_UNUSED __attribute__((unused)) /* used only by some checks' messages */

struct tc_msg { char *p; size_t n, cap; };
typedef struct tc_msg tc_msg;

typedef struct {
    const char *name;        /* the Python name, as the JIT's messages spell it */
    int32_t item;            /* element bytes */
    int32_t ndim;
    int32_t dim_off;         /* first dim in the program's dims array */
    int32_t value;           /* plan reads its data (a shape-deciding scalar) */
    int32_t param;           /* position among the entry's inputs, -1 when embedded */
    uint8_t dl_code, dl_bits;
    const char *dtype;       /* numpy dtype name */
    const char *type_text;   /* the declared type, f32[?, 64] */
    const char *const *size_names; /* per axis: the size parameter's name, NULL when static */
    const int64_t *static_dims;    /* per axis: the static dim, -1 when symbolic */
} tc_input;

typedef struct {
    const char *name;
    int32_t item, ndim;
    int32_t index;           /* program output position */
    int32_t lo;              /* its dims are regs[lo .. lo + ndim) */
    uint8_t dl_code, dl_bits;
    const char *dtype;
    const char *type_text;
} tc_output;

typedef struct {
    int32_t index;           /* program output position */
    int32_t state;           /* program input position of the state buffer */
    int32_t donates;         /* the program may write into the state buffer itself */
    int32_t lo;              /* its dims are regs[lo .. lo + ndim) */
} tc_update;

typedef int32_t (*tc_plan_fn)(const int64_t *, void *const *, int64_t *);
typedef int32_t (*tc_run_fn)(void *const *, void *const *, void *, const int64_t *);
typedef void (*tc_check_fn)(int32_t, const int64_t *, tc_msg *);

typedef struct {
    const char *name;
    int32_t n_in, n_params, n_out, n_prog_out, n_upd, n_dims, n_regs;
    const tc_input *in;
    const int32_t *params;   /* entry input j -> program input position */
    const tc_output *out;
    const tc_update *upd;
    tc_plan_fn plan;
    tc_run_fn run;
    tc_check_fn check;
    const uint8_t *check_status;
    const uint8_t *kernel_status; /* a kernel's failure: TCOMP_ERR_INDEX, _LINALG or _VALUE */
    const char *const *labels;    /* ... and its message */
    const char *param_names; /* "x, y, W, b" */
} tc_fn;

/* -- the last error, per thread -------------------------------------------------------- */

static pthread_key_t tc_err_key;
static pthread_once_t tc_err_once = PTHREAD_ONCE_INIT;
static int tc_err_ok;

static void tc_err_init(void) { tc_err_ok = pthread_key_create(&tc_err_key, free) == 0; }

__attribute__((destructor)) static void tc_err_fini(void) {
    /* after dlclose no thread may run free() through this library's key */
    if (tc_err_ok) pthread_key_delete(tc_err_key);
}

static char *tc_err_buffer(int create) {
    pthread_once(&tc_err_once, tc_err_init);
    if (!tc_err_ok) return NULL;
    char *b = (char *)pthread_getspecific(tc_err_key);
    if (!b && create) {
        b = (char *)calloc(1, TC_ERR_CAP);
        if (b && pthread_setspecific(tc_err_key, b) != 0) { free(b); b = NULL; }
    }
    return b;
}

static const char *tc_last_error(void) {
    char *b = tc_err_buffer(0);
    return b ? b : "";
}

static tc_msg tc_begin(void) {
    tc_msg m = {tc_err_buffer(1), 0, TC_ERR_CAP};
    if (m.p) m.p[0] = 0; else m.cap = 0;
    return m;
}

static void tc_add(tc_msg *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tc_add(tc_msg *m, const char *fmt, ...) {
    if (m->n + 1 >= m->cap) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(m->p + m->n, m->cap - m->n, fmt, ap);
    va_end(ap);
    if (w > 0) m->n += (size_t)w < m->cap - m->n ? (size_t)w : m->cap - m->n - 1;
}

TC_MAYBE_UNUSED static void tc_s(tc_msg *m, const char *s) { tc_add(m, "%s", s); }
TC_MAYBE_UNUSED static void tc_i(tc_msg *m, int64_t v) { tc_add(m, "%lld", (long long)v); }

/* a float as Python's repr writes it (shortest round trip) */
TC_MAYBE_UNUSED static void tc_f(tc_msg *m, double v) {
    char b[40];
    if (v != v) { tc_s(m, "nan"); return; }
    if (v == 1.0 / 0.0) { tc_s(m, "inf"); return; }
    if (v == -1.0 / 0.0) { tc_s(m, "-inf"); return; }
    if (v == (double)(int64_t)v && v < 1e16 && v > -1e16) { tc_add(m, "%.0f.0", v); return; }
    for (int p = 1; p <= 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, v);
        if (strtod(b, NULL) == v) break;
    }
    tc_s(m, b);
    if (!strpbrk(b, ".e")) tc_s(m, ".0");
}

TC_MAYBE_UNUSED static void tc_fr(tc_msg *m, int64_t bits) {
    double v;
    memcpy(&v, &bits, sizeof v);
    tc_f(m, v);
}

/* a shape as a Python tuple: (3,) (2, 3) () */
TC_MAYBE_UNUSED static void tc_tuple(tc_msg *m, const int64_t *d, int n) {
    tc_s(m, "(");
    for (int i = 0; i < n; i++) {
        if (i) tc_s(m, ", ");
        tc_i(m, d[i]);
    }
    tc_s(m, n == 1 ? ",)" : ")");
}

/* -- helpers ----------------------------------------------------------------------------- */

static const int64_t tc_dummy[8] __attribute__((aligned(64)));

static int64_t tc_align64(int64_t n) { return (n + 63) / 64 * 64; }

/* elements of a shape; -1 on a negative dim, -2 on overflow of count * item */
static int64_t tc_count(const int64_t *d, int n, int64_t item) {
    int64_t c = 1, bytes;
    for (int i = 0; i < n; i++) {
        if (d[i] < 0) return -1;
        if (__builtin_mul_overflow(c, d[i], &c)) return -2;
    }
    if (__builtin_mul_overflow(c, item, &bytes)) return -2;
    return c;
}

static int tc_overlap(const void *a, int64_t na, const void *b, int64_t nb) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return na > 0 && nb > 0 && x < y + (uintptr_t)nb && y < x + (uintptr_t)na;
}

static int tc_fail_check(const tc_fn *f, int32_t code, const int64_t *regs) {
    tc_msg m = tc_begin();
    f->check(code, regs, &m);
    return f->check_status[code - 1];
}

/* the validation every entry makes before plan, then plan itself */
static int tc_plan(const tc_fn *f, void *const *in, const int64_t *dims, int64_t *regs, int shape_only) {
    for (int k = 0; k < f->n_in; k++) {
        const tc_input *x = &f->in[k];
        const int64_t *d = dims + x->dim_off;
        for (int a = 0; a < x->ndim; a++) {
            if (d[a] < 0) {
                tc_msg m = tc_begin();
                if (x->size_names[a]) tc_add(&m, "size %s (input '%s' axis %d) must be >= 0, got %lld",
                                            x->size_names[a], x->name, a, (long long)d[a]);
                else tc_add(&m, "input '%s': negative dim %lld (axis %d)", x->name, (long long)d[a], a);
                return TCOMP_ERR_VALUE;
            }
        }
        int64_t count = tc_count(d, x->ndim, x->item);
        if (count == -2) {
            tc_msg m = tc_begin();
            tc_add(&m, "input '%s': shape ", x->name);
            tc_tuple(&m, d, x->ndim);
            tc_s(&m, " overflows a 64-bit byte count");
            return TCOMP_ERR_VALUE;
        }
        if (shape_only && !x->value) continue;
        if (!in[k] && count > 0) {
            tc_msg m = tc_begin();
            tc_add(&m, "input '%s': null data pointer", x->name);
            return TCOMP_ERR_TYPE;
        }
        if ((uintptr_t)in[k] % (uintptr_t)x->item) {
            tc_msg m = tc_begin();
            tc_add(&m, "input '%s': data pointer %p is not aligned to its %d-byte elements", x->name, in[k], x->item);
            return TCOMP_ERR_TYPE;
        }
    }
    int32_t rc = f->plan(dims, in, regs);
    return rc ? tc_fail_check(f, rc, regs) : 0;
}

static int64_t tc_ws_bytes(const tc_fn *f, const int64_t *regs) {
    int64_t total = tc_align64(regs[0]);
    for (int u = 0; u < f->n_upd; u++) {
        const tc_input *s = &f->in[f->upd[u].state];
        total += tc_align64(tc_count(regs + f->upd[u].lo, s->ndim, 1) * s->item);
    }
    return total;
}

static int64_t tc_input_bytes(const tc_fn *f, const int64_t *dims, int k) {
    const tc_input *x = &f->in[k];
    return tc_count(dims + x->dim_off, x->ndim, 1) * x->item;
}

/* outputs checked against their buffers' capacity (typed entries; caps NULL: DLPack, checked by the caller) */
static int tc_check_outputs(const tc_fn *f, void *const *outs, const int64_t *caps, const int64_t *regs) {
    for (int j = 0; j < f->n_out; j++) {
        const tc_output *o = &f->out[j];
        int64_t count = tc_count(regs + o->lo, o->ndim, o->item);
        if (caps && caps[j] < count) {
            tc_msg m = tc_begin();
            tc_add(&m, "output '%s': the buffer holds %lld elements, the result needs %lld (shape ", o->name,
                   (long long)caps[j], (long long)count);
            tc_tuple(&m, regs + o->lo, o->ndim);
            tc_s(&m, ")");
            return TCOMP_ERR_VALUE;
        }
        if (!outs[j] && count > 0) {
            tc_msg m = tc_begin();
            tc_add(&m, "output '%s': null data pointer", o->name);
            return TCOMP_ERR_TYPE;
        }
        if ((uintptr_t)outs[j] % (uintptr_t)o->item) {
            tc_msg m = tc_begin();
            tc_add(&m, "output '%s': data pointer %p is not aligned to its %d-byte elements", o->name, outs[j],
                   o->item);
            return TCOMP_ERR_TYPE;
        }
    }
    return 0;
}

/* after plan and the output checks: overlaps, updates, run, write-back */
static int tc_exec(const tc_fn *f, void *const *in, const int64_t *dims, void *const *outs, const int64_t *regs,
                   void *ws) {
    void *po[f->n_prog_out + 1];
    void *pin[f->n_in + 1];
    for (int k = 0; k < f->n_in; k++) pin[k] = in[k] ? in[k] : (void *)tc_dummy;
    for (int j = 0; j < f->n_out; j++) {
        const tc_output *o = &f->out[j];
        int64_t nb = tc_count(regs + o->lo, o->ndim, 1) * o->item;
        for (int k = 0; k < f->n_in; k++) {
            if (tc_overlap(outs[j], nb, in[k], tc_input_bytes(f, dims, k))) {
                tc_msg m = tc_begin();
                tc_add(&m, "output '%s' overlaps input '%s'", o->name, f->in[k].name);
                return TCOMP_ERR_VALUE;
            }
        }
        for (int i = 0; i < j; i++) {
            const tc_output *p = &f->out[i];
            if (tc_overlap(outs[j], nb, outs[i], tc_count(regs + p->lo, p->ndim, 1) * p->item)) {
                tc_msg m = tc_begin();
                tc_add(&m, "output '%s' overlaps output '%s'", o->name, p->name);
                return TCOMP_ERR_VALUE;
            }
        }
        po[o->index] = outs[j] ? outs[j] : (void *)tc_dummy;
    }
    if (!ws) ws = (void *)tc_dummy;
    int64_t off = tc_align64(regs[0]);
    uint8_t copy[f->n_upd + 1];
    for (int u = 0; u < f->n_upd; u++) {
        const tc_update *up = &f->upd[u];
        const tc_input *s = &f->in[up->state];
        const int64_t *have = dims + s->dim_off, *want = regs + up->lo;
        for (int a = 0; a < s->ndim; a++) {
            if (have[a] != want[a]) {
                tc_msg m = tc_begin();
                tc_add(&m, "update of '%s': the new value has shape ", s->name);
                tc_tuple(&m, want, s->ndim);
                tc_s(&m, ", its state buffer ");
                tc_tuple(&m, have, s->ndim);
                return TCOMP_ERR_VALUE;
            }
        }
        int64_t nb = tc_input_bytes(f, dims, up->state);
        int alone = up->donates && in[up->state];
        for (int k = 0; alone && k < f->n_in; k++)
            if (k != up->state && tc_overlap(in[up->state], nb, in[k], tc_input_bytes(f, dims, k))) alone = 0;
        copy[u] = !alone;
        po[up->index] = alone ? in[up->state] : (void *)((char *)ws + off);
        off += tc_align64(nb);
    }
    int32_t rc = f->run(pin, po, ws, regs);
    if (rc) {
        tc_msg m = tc_begin();
        tc_add(&m, "%s", f->labels[rc - 1]);
        return f->kernel_status[rc - 1];
    }
    for (int u = 0; u < f->n_upd; u++) {
        const tc_update *up = &f->upd[u];
        int64_t nb = tc_input_bytes(f, dims, up->state);
        if (copy[u] && nb > 0) memcpy(in[up->state], po[up->index], (size_t)nb);
    }
    return 0;
}

/* after plan: caller workspace (alloc 0) or one allocated for the call (alloc 1) */
static int tc_call_planned(const tc_fn *f, void *const *in, const int64_t *dims, void *const *outs,
                           const int64_t *caps, void *ws, size_t ws_bytes, int alloc, int64_t *regs) {
    int rc = tc_check_outputs(f, outs, caps, regs);
    if (rc) return rc;
    int64_t need = tc_ws_bytes(f, regs);
    if (alloc) {
        ws = need > 0 ? aligned_alloc(64, (size_t)need) : NULL;
        if (need > 0 && !ws) {
            tc_msg m = tc_begin();
            tc_add(&m, "%s: cannot allocate %lld workspace bytes", f->name, (long long)need);
            return TCOMP_ERR_NOMEM;
        }
    } else if (need > 0) {
        tc_msg m = {0};
        if (!ws) {
            m = tc_begin();
            tc_add(&m, "workspace: null pointer, %lld bytes needed", (long long)need);
            return TCOMP_ERR_TYPE;
        }
        if ((int64_t)ws_bytes < need) {
            m = tc_begin();
            tc_add(&m, "workspace: %llu bytes given, %lld needed", (unsigned long long)ws_bytes, (long long)need);
            return TCOMP_ERR_VALUE;
        }
        if ((uintptr_t)ws % 64) {
            m = tc_begin();
            tc_add(&m, "workspace: pointer %p is not 64-byte aligned", ws);
            return TCOMP_ERR_TYPE;
        }
    }
    rc = tc_exec(f, in, dims, outs, regs, ws);
    if (alloc) free(ws);
    return rc;
}

/* the typed entries */
static int tc_call(const tc_fn *f, void *const *in, const int64_t *dims, void *const *outs, const int64_t *caps,
                   void *ws, size_t ws_bytes, int alloc, int64_t *regs) {
    int rc = tc_plan(f, in, dims, regs, 0);
    return rc ? rc : tc_call_planned(f, in, dims, outs, caps, ws, ws_bytes, alloc, regs);
}

static int tc_shapes(const tc_fn *f, void *const *in, const int64_t *dims, int64_t *out_dims, size_t *ws_bytes,
                     int64_t *regs) {
    int rc = tc_plan(f, in, dims, regs, 1);
    if (rc) return rc;
    int n = 0;
    for (int j = 0; j < f->n_out; j++) n += f->out[j].ndim;
    if (n && !out_dims) {
        tc_msg m = tc_begin();
        tc_add(&m, "%s_shapes: out_dims is a null pointer (%d dims to write)", f->name, n);
        return TCOMP_ERR_TYPE;
    }
    for (int j = 0, at = 0; j < f->n_out; j++)
        for (int a = 0; a < f->out[j].ndim; a++) out_dims[at++] = regs[f->out[j].lo + a];
    if (ws_bytes) *ws_bytes = (size_t)tc_ws_bytes(f, regs);
    return 0;
}

/* -- DLPack --------------------------------------------------------------------------------- */

static void tc_dl_dtype(tc_msg *m, DLDataType t) {
    const char *name = NULL;
    if (t.lanes == 1) {
        if (t.code == kDLFloat) name = t.bits == 32 ? "float32" : t.bits == 64 ? "float64"
                                     : t.bits == 16 ? "float16" : NULL;
        else if (t.code == kDLInt) name = t.bits == 8 ? "int8" : t.bits == 16 ? "int16" : t.bits == 32 ? "int32"
                                       : t.bits == 64 ? "int64" : NULL;
        else if (t.code == kDLUInt) name = t.bits == 8 ? "uint8" : t.bits == 16 ? "uint16" : t.bits == 32 ? "uint32"
                                       : t.bits == 64 ? "uint64" : NULL;
        else if (t.code == kDLBool && t.bits == 8) name = "bool";
    }
    if (name) tc_s(m, name);
    else tc_add(m, "DLPack dtype (code %d, bits %d, lanes %d)", t.code, t.bits, t.lanes);
}

/* a DLTensor the entry accepts: CPU, the exact dtype, the rank; strides NULL or compact row-major */
static int tc_dl_check(const DLTensor *t, const char *what, const char *name, uint8_t code, uint8_t bits,
                       const char *dtype, int ndim, const char *type_text) {
    tc_msg m;
    if (!t) {
        m = tc_begin();
        tc_add(&m, "%s '%s': null DLTensor pointer", what, name);
        return TCOMP_ERR_TYPE;
    }
    if (t->device.device_type != kDLCPU && t->device.device_type != kDLCUDAHost) {
        m = tc_begin();
        tc_add(&m, "%s '%s': device type %d is not host memory (kDLCPU)", what, name, (int)t->device.device_type);
        return TCOMP_ERR_TYPE;
    }
    if (t->dtype.code != code || t->dtype.bits != bits || t->dtype.lanes != 1) {
        m = tc_begin();
        tc_add(&m, "%s '%s': expected dtype %s, got ", what, name, dtype);
        tc_dl_dtype(&m, t->dtype);
        return TCOMP_ERR_TYPE;
    }
    if (t->ndim != ndim || (ndim > 0 && !t->shape)) {
        m = tc_begin();
        tc_add(&m, "%s '%s': expected rank %d (%s), got ", what, name, ndim, type_text);
        if (t->shape || t->ndim == 0) {
            tc_s(&m, "shape ");
            tc_tuple(&m, t->shape, t->ndim);
        } else tc_add(&m, "rank %d without a shape", t->ndim);
        return TCOMP_ERR_VALUE;
    }
    for (int a = 0; a < ndim; a++) {
        if (t->shape[a] < 0) {
            m = tc_begin();
            tc_add(&m, "%s '%s': negative dim in shape ", what, name);
            tc_tuple(&m, t->shape, ndim);
            return TCOMP_ERR_VALUE;
        }
    }
    if (t->strides && tc_count(t->shape, ndim, 1) > 0) {
        int64_t want = 1;
        for (int a = ndim - 1; a >= 0; a--) {
            if (t->shape[a] != 1 && t->strides[a] != want) {
                m = tc_begin();
                tc_add(&m, "%s '%s': strides ", what, name);
                tc_tuple(&m, t->strides, ndim);
                tc_s(&m, " of shape ");
                tc_tuple(&m, t->shape, ndim);
                tc_s(&m, " are not compact row-major (the DLPack entries take NULL or C-contiguous strides)");
                return TCOMP_ERR_VALUE;
            }
            want *= t->shape[a];
        }
    }
    return 0;
}

static int tc_dlpack(const tc_fn *f, DLTensor *const *inputs, int32_t n_inputs, DLTensor *const *outputs,
                     int32_t n_outputs, void **in, int64_t *dims, int64_t *regs) {
    tc_msg m;
    if (n_inputs != f->n_params || (n_inputs && !inputs)) {
        m = tc_begin();
        tc_add(&m, "%s_dlpack: takes %d inputs (%s), got %d", f->name, f->n_params, f->param_names, (int)n_inputs);
        return TCOMP_ERR_TYPE;
    }
    if (n_outputs != f->n_out || (n_outputs && !outputs)) {
        m = tc_begin();
        tc_add(&m, "%s_dlpack: takes %d outputs, got %d", f->name, f->n_out, (int)n_outputs);
        return TCOMP_ERR_TYPE;
    }
    for (int j = 0; j < f->n_params; j++) {
        const tc_input *x = &f->in[f->params[j]];
        const DLTensor *t = inputs[j];
        int rc = tc_dl_check(t, "input", x->name, x->dl_code, x->dl_bits, x->dtype, x->ndim, x->type_text);
        if (rc) return rc;
        in[f->params[j]] = t->data ? (char *)t->data + t->byte_offset : NULL;
        for (int a = 0; a < x->ndim; a++) dims[x->dim_off + a] = t->shape[a];
    }
    int rc = tc_plan(f, in, dims, regs, 0);
    if (rc) return rc;
    void *outs[f->n_out + 1];
    for (int j = 0; j < f->n_out; j++) {
        const tc_output *o = &f->out[j];
        const DLTensor *t = outputs[j];
        rc = tc_dl_check(t, "output", o->name, o->dl_code, o->dl_bits, o->dtype, o->ndim, o->type_text);
        if (rc) return rc;
        for (int a = 0; a < o->ndim; a++) {
            if (t->shape[a] != regs[o->lo + a]) {
                m = tc_begin();
                tc_add(&m, "output '%s': expected shape ", o->name);
                tc_tuple(&m, regs + o->lo, o->ndim);
                tc_s(&m, ", got ");
                tc_tuple(&m, t->shape, o->ndim);
                return TCOMP_ERR_VALUE;
            }
        }
        outs[j] = t->data ? (char *)t->data + t->byte_offset : NULL;
    }
    return tc_call_planned(f, in, dims, outs, NULL, NULL, 0, 1, regs);
}
"""
