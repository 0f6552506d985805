"""A bare driver of Python's own libssl (cffi), for OpenSSL claims a sesskit Lab cannot stage.

sesskit's Lab makes a new pair of SSLs per connect, refuses a session from another
SSL_CTX and gives every server a session id context; the notebooks still teach
what OpenSSL does in those cases.  These calls check it on the real library, without
observation: the libssl the "libssl" engine drives (bound with RTLD_NOLOAD, never a
second copy).
"""

from __future__ import annotations

from typing import Any

from cffi import FFI

from sesskit.engines import _libssl_ffi
from sesskit.engines.libssl import _make_cert

CDEF = r"""
typedef struct ssl_st SSL; typedef struct ssl_ctx_st SSL_CTX; typedef struct ssl_session_st SSL_SESSION;
typedef struct ssl_method_st SSL_METHOD; typedef struct bio_st BIO; typedef struct bio_method_st BIO_METHOD;
const SSL_METHOD *TLS_client_method(void);
const SSL_METHOD *TLS_server_method(void);
SSL_CTX *SSL_CTX_new(const SSL_METHOD *meth);
void SSL_CTX_free(SSL_CTX *ctx);
long SSL_CTX_ctrl(SSL_CTX *ctx, int cmd, long larg, void *parg);
long SSL_CTX_get_timeout(const SSL_CTX *ctx);
uint64_t SSL_CTX_set_options(SSL_CTX *ctx, uint64_t op);
int SSL_CTX_set_session_id_context(SSL_CTX *ctx, const unsigned char *sid_ctx, unsigned int len);
int SSL_CTX_use_certificate_ASN1(SSL_CTX *ctx, int len, const unsigned char *d);
int SSL_CTX_use_PrivateKey_ASN1(int pk, SSL_CTX *ctx, const unsigned char *d, long len);
void SSL_CTX_set_verify(SSL_CTX *ctx, int mode, void *cb);
void SSL_CTX_flush_sessions(SSL_CTX *ctx, long tm);
SSL *SSL_new(SSL_CTX *ctx);
void SSL_free(SSL *ssl);
int SSL_clear(SSL *s);
void SSL_set_bio(SSL *s, BIO *rbio, BIO *wbio);
void SSL_set_connect_state(SSL *s);
void SSL_set_accept_state(SSL *s);
int SSL_do_handshake(SSL *s);
int SSL_shutdown(SSL *s);
int SSL_get_error(const SSL *s, int ret_code);
int SSL_session_reused(const SSL *s);
SSL_SESSION *SSL_get1_session(SSL *ssl);
int SSL_set_session(SSL *to, SSL_SESSION *session);
void SSL_SESSION_free(SSL_SESSION *ses);
int SSL_SESSION_is_resumable(const SSL_SESSION *s);
const BIO_METHOD *BIO_s_mem(void);
BIO *BIO_new(const BIO_METHOD *type);
int BIO_read(BIO *b, void *data, int dlen);
int BIO_write(BIO *b, const void *data, int dlen);
unsigned long ERR_get_error(void);
void ERR_error_string_n(unsigned long e, char *buf, size_t len);
"""
SESS_NUMBER, GET_CACHE_SIZE, SET_CACHE_MODE, GET_CACHE_MODE = 20, 43, 44, 45
SET_MIN, SET_MAX = 123, 124
SSL_SESS_CACHE_CLIENT, SSL_SESS_CACHE_SERVER = 1, 2
SSL_OP_NO_TICKET = 1 << 14
SSL_VERIFY_PEER = 1
TLS = {"1.2": 0x0303, "1.3": 0x0304}
EVP_PKEY_EC = 408
WANT_READ = 2


class Raw:
    def __init__(self) -> None:
        path = _libssl_ffi.load().path  # Python's own libssl, already loaded (and libcrypto with it)
        self.ffi = FFI()
        self.ffi.cdef(CDEF)
        self.lib = self.ffi.dlopen(path, self.ffi.RTLD_NOW | self.ffi.RTLD_NOLOAD)
        self.cert, self.key = _make_cert()
        self._free: list[Any] = []

    def close(self) -> None:
        for kind, p in reversed(self._free):
            {"ssl": self.lib.SSL_free, "ctx": self.lib.SSL_CTX_free, "sess": self.lib.SSL_SESSION_free}[kind](
                p
            )
        self._free.clear()

    def ctx(
        self,
        side: str,
        tls: str = "1.2",
        *,
        sid_ctx: bytes | None = b"sesskit",
        tickets: bool = False,
        cache_mode: int | None = None,
        verify: int = 0,
    ) -> Any:
        L, ffi = self.lib, self.ffi
        ctx = L.SSL_CTX_new(L.TLS_server_method() if side == "server" else L.TLS_client_method())
        self._free.append(("ctx", ctx))
        L.SSL_CTX_ctrl(ctx, SET_MIN, TLS[tls], ffi.NULL)
        L.SSL_CTX_ctrl(ctx, SET_MAX, TLS[tls], ffi.NULL)
        if side == "server":
            assert L.SSL_CTX_use_certificate_ASN1(ctx, len(self.cert), self.cert) == 1
            assert L.SSL_CTX_use_PrivateKey_ASN1(EVP_PKEY_EC, ctx, self.key, len(self.key)) == 1
            if not tickets:
                L.SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET)
        if sid_ctx is not None:
            assert L.SSL_CTX_set_session_id_context(ctx, sid_ctx, len(sid_ctx)) == 1
        if cache_mode is not None:
            L.SSL_CTX_ctrl(ctx, SET_CACHE_MODE, cache_mode, ffi.NULL)
        if verify:
            L.SSL_CTX_set_verify(ctx, verify, ffi.NULL)
        return ctx

    def ssl(self, ctx: Any, side: str) -> Any:
        s = self.lib.SSL_new(ctx)
        self._free.append(("ssl", s))
        (self.lib.SSL_set_accept_state if side == "server" else self.lib.SSL_set_connect_state)(s)
        return s

    def handshake(self, c: Any, s: Any) -> bool:
        """Fresh memory BIOs, then both sides' handshakes to the end: True, or False if one failed."""
        L, ffi = self.lib, self.ffi
        bios = [L.BIO_new(L.BIO_s_mem()) for _ in range(4)]
        L.SSL_set_bio(c, bios[0], bios[1])
        L.SSL_set_bio(s, bios[2], bios[3])
        buf = ffi.new("char[]", 65536)
        done = [False, False]
        for _ in range(50):
            for i, x in enumerate((c, s)):
                if not done[i]:
                    r = L.SSL_do_handshake(x)
                    if r == 1:
                        done[i] = True
                    elif L.SSL_get_error(x, r) != WANT_READ:
                        return False
            for src, dst in ((bios[1], bios[2]), (bios[3], bios[0])):
                n = L.BIO_read(src, buf, 65536)
                if n > 0:
                    L.BIO_write(dst, buf, n)
            if all(done):
                return True
        return False

    def errors(self) -> str:
        out = []
        while (e := self.lib.ERR_get_error()) != 0:
            b = self.ffi.new("char[]", 256)
            self.lib.ERR_error_string_n(e, b, 256)
            out.append(self.ffi.string(b).decode())
        return "; ".join(out)

    def get1(self, x: Any) -> Any:
        sess = self.lib.SSL_get1_session(x)
        self._free.append(("sess", sess))
        return sess
