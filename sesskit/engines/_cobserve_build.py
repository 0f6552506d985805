"""Builds :mod:`sesskit.engines._cobserve` (cffi API mode) from ``_cobserve.c``.

Used by ``setup.py`` at install time.  The extension is optional: where it cannot
be compiled (no C compiler), the libssl engine observes in Python, as before
(:func:`sesskit.engines.libssl.helper_status` says which).  It links against
no OpenSSL and needs no OpenSSL headers (see the C file).
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

CDEF = r"""
#define SK_MAX_SEEN 256
typedef struct sk_fns {
    int (*SSL_do_handshake)(void *);
    int (*BIO_read)(void *, void *, int);
    int (*BIO_write)(void *, const void *, int);
    void *(*SSL_get_session)(const void *);
    void *(*SSL_get_SSL_CTX)(const void *);
    void *(*SSL_CTX_get_ex_data)(const void *, int);
    long (*SSL_CTX_ctrl)(void *, int, long, void *);
    int (*SSL_SESSION_up_ref)(void *);
    long (*SSL_SESSION_get_time)(const void *);
    long (*SSL_SESSION_set_time)(void *, long);
    int (*SSL_SESSION_set1_ticket_appdata)(void *, const void *, size_t);
    int (*SSL_SESSION_get0_ticket_appdata)(void *, void **, size_t *);
    void *(*SSL_new)(void *);
    void (*SSL_free)(void *);
    void *(*BIO_new)(const void *);
    int (*BIO_free)(void *);
    void (*SSL_set_bio)(void *, void *, void *);
    void (*SSL_set_connect_state)(void *);
    void (*SSL_set_accept_state)(void *);
    int (*SSL_set_session)(void *, void *);
    int (*SSL_session_reused)(const void *);
} sk_fns;
typedef struct sk_state {
    int64_t epoch;
    int64_t now;
    void *ctx[2];
    int n;
    int overflow;
    void *seen[SK_MAX_SEEN];
    int side[SK_MAX_SEEN];
} sk_state;
typedef struct sk_link {
    void *ssl[2];
    void *rbio[2];
    void *wbio[2];
    void *sess[2];
    int result[2];
    int handshaking[2];
    int fresh[2];
    char *out[2];
    int out_len[2];
    int out_cap;
    char *buf;
    int buf_size;
    int reused;
} sk_link;
void sk_init(const sk_fns *fns);
int sk_connect(sk_state *st, sk_link *L, void *cctx, void *sctx, const void *mem, void *resume);
void sk_ctrl_many(void *const *ctxs, int nctx, const int *codes, int n, long *out);
int sk_new_session_cb(void *ssl, void *sess);
int sk_ticket_gen_cb(void *ssl, void *arg);
int sk_ticket_dec_cb(void *ssl, void *sess, const unsigned char *keyname, size_t keyname_len, int status,
                     void *arg);
"""

ffi = FFI()
ffi.cdef(CDEF)
ffi.set_source(
    "sesskit.engines._cobserve",
    (Path(__file__).with_name("_cobserve.c")).read_text(),
    extra_compile_args=["-O2"],
)

if __name__ == "__main__":  # a quick local build: python sesskit/engines/_cobserve_build.py
    ffi.compile(tmpdir=str(Path(__file__).resolve().parents[2] / "build" / "cffi"), verbose=True)
