/* sesskit's observation helper: the libssl engine's handshake loop and callbacks, in C.
 *
 * The same observation as the Python frame (_frame.py: ObservingEngine.connect,
 * _hs, _drain; libssl.py: _see and the callbacks), done without returning to
 * Python between handshake flights, so that observing a handshake costs about
 * what the handshake costs.  See README.md, "How the numbers are read".
 *
 * It links against no OpenSSL: every OpenSSL function is called through a
 * pointer taken from the libssl that CPython's ssl module loaded (the engine's
 * cffi ABI binding), so there is still one libssl in the process.  OpenSSL's
 * objects are opaque here (void *); no struct layout is assumed.
 *
 * What it does to OpenSSL is exactly what the Python path does: the same
 * calls in the same order, an observer reference (SSL_SESSION_up_ref) on every
 * session the first time it is seen within one call, and the same restamping
 * of a session's time to the lab's frozen "now".  Python adopts the references
 * (sk_state.seen) after the call and drops any it already held.
 *
 * After a connect that succeeded it also reads what Python would read next
 * (read_step): each pinned session's references and cache owner, at the
 * offsets the engine's probe calibrated and passed in, whether it is
 * resumable, and both contexts' statistics -- so that the step is recorded
 * from values read in the same instant, with no further call into OpenSSL.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_cobserve.h"

/* OpenSSL 3.x constants (OPENSSL_FACTS.md "Control constants"; _libssl_ffi.py). */
#define SK_TICKET_SUCCESS 5
#define SK_TICKET_SUCCESS_RENEW 6
#define SK_TICKET_RETURN_IGNORE_RENEW 2
#define SK_TICKET_RETURN_USE 3
#define SK_TICKET_RETURN_USE_RENEW 4

static sk_fns F;
static int F_set = 0;

void sk_init(const sk_fns *fns) {
    F = *fns;
    F_set = 1;
}

/* Note a session that is live right now: pin it the first time, restamp its time. */
static void see(sk_state *st, void *p, int side) {
    int j;
    if (p == NULL)
        return;
    for (j = 0; j < st->n; j++)
        if (st->seen[j] == p)
            goto stamp;
    if (st->n == SK_MAX_SEEN) {
        st->overflow = 1;
        return;
    }
    F.SSL_SESSION_up_ref(p);
    st->seen[st->n] = p;
    st->side[st->n] = side;
    st->n++;
stamp:
    if (F.SSL_SESSION_get_time(p) > st->epoch)
        F.SSL_SESSION_set_time(p, (long)st->epoch);  /* stamped "now": E on the virtual scale */
}

/* Move what SSL i wrote: a handshake flight straight into the peer's read BIO. */
static int drain(sk_link *L, int i) {
    int peer = 1 - i;
    for (;;) {
        int n = F.BIO_read(L->wbio[i], L->buf, L->buf_size);
        if (n <= 0)
            return 0;
        if (L->handshaking[peer] && L->out_len[peer] == 0) {
            F.BIO_write(L->rbio[peer], L->buf, n);
            L->fresh[peer] = 1;
        } else {
            if (n > L->out_cap - L->out_len[peer])
                return -1;
            memcpy(L->out[peer] + L->out_len[peer], L->buf, (size_t)n);
            L->out_len[peer] += n;
        }
        if (n < L->buf_size)
            return 0;
    }
}

static int hs(sk_state *st, sk_link *L, int i, int *done) {
    int r;
    L->fresh[i] = 0;
    r = L->result[i] = F.SSL_do_handshake(L->ssl[i]);
    if (drain(L, i) < 0)
        return -1;
    L->sess[i] = F.SSL_get_session(L->ssl[i]);
    see(st, L->sess[i], i);
    if (r == 1) {
        L->handshaking[i] = 0;
        *done = 1;
    }
    return 0;
}

/* SSL_new on ctx over two new memory BIOs, in its role (i: 0 client, 1 server); 0 on failure. */
static int new_ssl(sk_link *L, int i, void *ctx, const void *mem) {
    void *ssl = F.SSL_new(ctx);
    void *rbio = ssl ? F.BIO_new(mem) : NULL;
    void *wbio = rbio ? F.BIO_new(mem) : NULL;
    if (wbio == NULL) {
        if (rbio)
            F.BIO_free(rbio);
        if (ssl)
            F.SSL_free(ssl);
        return 0;
    }
    F.SSL_set_bio(ssl, rbio, wbio);  /* the SSL owns both BIOs from here on */
    if (i == 0)
        F.SSL_set_connect_state(ssl);
    else
        F.SSL_set_accept_state(ssl);
    L->ssl[i] = ssl;
    L->rbio[i] = rbio;
    L->wbio[i] = wbio;
    return 1;
}

/* What Python reads after a call, read here in one pass: each pinned session's references, cache
 * owner and resumability (at the offsets the probe calibrated), and both contexts' statistics. */
static void read_step(sk_state *st) {
    int j, i;
    for (j = 0; j < st->n; j++) {
        const char *p = (const char *)st->seen[j];
        int *info = st->info + 4 * j;
        void *owner;
        memcpy(&info[1], p + st->off_refs, sizeof info[1]);
        memcpy(&owner, p + st->off_owner, sizeof owner);
        info[0] = st->side[j];
        info[2] = owner == NULL ? -1 : owner == st->ctx[0] ? 0 : owner == st->ctx[1] ? 1 : 2;
        info[3] = F.SSL_SESSION_is_resumable(st->seen[j]);
    }
    for (j = 0; j < 2; j++)
        for (i = 0; i < st->ncodes; i++)
            st->ctrl[j * st->ncodes + i] = F.SSL_CTX_ctrl(st->ctx[j], st->codes[i], 0, NULL);
}

/* sk_connect's work; sk_connect then lists what was made, whatever this returned. */
static int run_connect(sk_state *st, sk_link *L, void *cctx, void *sctx, const void *mem, void *resume) {
    int c_done = 0, s_done = 0, moved, i;
    for (i = 0; i < 2; i++) {
        L->ssl[i] = L->rbio[i] = L->wbio[i] = L->sess[i] = NULL;
        L->result[i] = 0;
        L->handshaking[i] = 1;
        L->fresh[i] = 0;
        L->out_len[i] = 0;
    }
    L->reused = 0;
    if (!F_set)
        return -3;
    if (!new_ssl(L, 0, cctx, mem) || !new_ssl(L, 1, sctx, mem))
        return -4;
    if (resume != NULL) {
        if (F.SSL_set_session(L->ssl[0], resume) != 1)
            return -5;
        L->sess[0] = F.SSL_get_session(L->ssl[0]);
        see(st, L->sess[0], 0);
    }
    if (hs(st, L, 0, &c_done) < 0)
        return -1;
    while (!(c_done && s_done)) {
        moved = 0;
        if (L->fresh[1] && !s_done) {
            if (hs(st, L, 1, &s_done) < 0)
                return -1;
            moved = 1;
        }
        if (L->fresh[0] && !c_done) {
            if (hs(st, L, 0, &c_done) < 0)
                return -1;
            moved = 1;
        }
        if (!moved)
            return 0;
    }
    L->reused = F.SSL_session_reused(L->ssl[0]);
    if (st->overflow)
        return -2;
    read_step(st);
    for (i = 0; i < 2; i++)
        L->shutdown[i] = F.SSL_get_shutdown(L->ssl[i]);
    return 1;
}

/* A new client SSL on cctx and server SSL on sctx over memory BIOs (ssl[], rbio[], wbio[]); with
 * resume, SSL_set_session(client, resume); then both handshakes to the end, and (on success)
 * read_step and each SSL's shutdown flags.  Whatever it returns, made[] then lists what it made.
 * 1: done; 0: stalled (see result[]); -1: out[] full; -2: too many sessions; -3: sk_init not called;
 * -4: SSL_new/BIO_new failed (ssl[] holds what was made); -5: SSL_set_session failed. */
int sk_connect(sk_state *st, sk_link *L, void *cctx, void *sctx, const void *mem, void *resume) {
    int rc = run_connect(st, L, cctx, sctx, mem, resume), i;
    for (i = 0; i < 2; i++) {
        L->made[i] = L->ssl[i];
        L->made[2 + i] = L->rbio[i];
        L->made[4 + i] = L->wbio[i];
        L->made[6 + i] = L->sess[i];
    }
    return rc;
}

/* SSL_CTX_ctrl(ctxs[j], codes[i], 0, NULL) into out[j * n + i], for each context and code. */
void sk_ctrl_many(void *const *ctxs, int nctx, const int *codes, int n, long *out) {
    int i, j;
    for (j = 0; j < nctx; j++)
        for (i = 0; i < n; i++)
            out[j * n + i] = F.SSL_CTX_ctrl(ctxs[j], codes[i], 0, NULL);
}

/* new_session_cb: announce the session; return 0, so OpenSSL drops the reference it took for us. */
int sk_new_session_cb(void *ssl, void *sess) {
    void *ctx = F.SSL_get_SSL_CTX(ssl);
    sk_state *st = (sk_state *)F.SSL_CTX_get_ex_data(ctx, 0);
    if (st != NULL)
        see(st, sess, ctx == st->ctx[1]);
    return 0;
}

/* Ticket generation: seal the session's virtual issue time into the ticket (8 bytes, little-endian). */
int sk_ticket_gen_cb(void *ssl, void *arg) {
    sk_state *st = (sk_state *)arg;
    void *sess = F.SSL_get_session(ssl);
    if (sess != NULL) {
        int64_t t = F.SSL_SESSION_get_time(sess);
        uint64_t vt;
        unsigned char d[8];
        int k;
        if (t > st->epoch)
            t = st->epoch;
        vt = (uint64_t)(t - st->epoch + st->now);
        for (k = 0; k < 8; k++)
            d[k] = (unsigned char)(vt >> (8 * k));
        F.SSL_SESSION_set1_ticket_appdata(sess, d, 8);
    }
    return 1;
}

/* Ticket decryption: age the decrypted copy by the virtual clock; never change the ticket's status. */
int sk_ticket_dec_cb(void *ssl, void *sess, const unsigned char *keyname, size_t keyname_len, int status,
                     void *arg) {
    sk_state *st = (sk_state *)arg;
    (void)ssl;
    (void)keyname;
    (void)keyname_len;
    if (status != SK_TICKET_SUCCESS && status != SK_TICKET_SUCCESS_RENEW)
        return SK_TICKET_RETURN_IGNORE_RENEW;  /* keeps EMPTY / NO_DECRYPT as they are */
    if (sess != NULL) {
        void *p = NULL;
        size_t len = 0;
        if (F.SSL_SESSION_get0_ticket_appdata(sess, &p, &len) == 1 && len == 8) {
            const unsigned char *d = (const unsigned char *)p;
            uint64_t u = 0;
            int k;
            for (k = 0; k < 8; k++)
                u |= (uint64_t)d[k] << (8 * k);
            F.SSL_SESSION_set_time(sess, (long)(st->epoch - (st->now - (int64_t)u)));
        }
    }
    return status == SK_TICKET_SUCCESS ? SK_TICKET_RETURN_USE : SK_TICKET_RETURN_USE_RENEW;
}
