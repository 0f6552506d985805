"""Bindings (cffi ABI mode) to the libssl that CPython's ``ssl`` module loaded.

The library is found in ``/proc/self/maps`` after ``import ssl`` and opened with
``RTLD_NOLOAD``: if it is not already in the process, opening fails instead of
loading a second copy.  Loaded once per process; the probe offsets are
calibrated on first use (see :mod:`._probe`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import CalibrationError, SesskitError

CDEF = r"""
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_session_st SSL_SESSION;
typedef struct ssl_method_st SSL_METHOD;
typedef struct bio_st BIO;
typedef struct bio_method_st BIO_METHOD;

const char *OpenSSL_version(int type);
unsigned long ERR_get_error(void);
void ERR_error_string_n(unsigned long e, char *buf, size_t len);
void ERR_clear_error(void);

const SSL_METHOD *TLS_client_method(void);
const SSL_METHOD *TLS_server_method(void);
SSL_CTX *SSL_CTX_new(const SSL_METHOD *meth);
void SSL_CTX_free(SSL_CTX *ctx);
long SSL_CTX_ctrl(SSL_CTX *ctx, int cmd, long larg, void *parg);
uint64_t SSL_CTX_set_options(SSL_CTX *ctx, uint64_t op);
int SSL_CTX_set_session_id_context(SSL_CTX *ctx, const unsigned char *sid_ctx, unsigned int len);
void SSL_CTX_set_verify(SSL_CTX *ctx, int mode, void *verify_callback);
int SSL_CTX_use_certificate_ASN1(SSL_CTX *ctx, int len, const unsigned char *d);
int SSL_CTX_use_PrivateKey_ASN1(int pk, SSL_CTX *ctx, const unsigned char *d, long len);
int SSL_CTX_check_private_key(const SSL_CTX *ctx);
long SSL_CTX_set_timeout(SSL_CTX *ctx, long t);
void SSL_CTX_flush_sessions(SSL_CTX *ctx, long tm);
int SSL_CTX_add_session(SSL_CTX *ctx, SSL_SESSION *session);
int SSL_CTX_remove_session(SSL_CTX *ctx, SSL_SESSION *session);
SSL_CTX *SSL_get_SSL_CTX(const SSL *ssl);
int SSL_CTX_set_ex_data(SSL_CTX *ctx, int idx, void *data);
void *SSL_CTX_get_ex_data(const SSL_CTX *ctx, int idx);
void SSL_CTX_sess_set_new_cb(SSL_CTX *ctx, int (*new_session_cb)(SSL *, SSL_SESSION *));
int SSL_CTX_set_session_ticket_cb(SSL_CTX *ctx,
    int (*gen_cb)(SSL *, void *),
    int (*dec_cb)(SSL *, SSL_SESSION *, const unsigned char *, size_t, int, void *),
    void *arg);

SSL *SSL_new(SSL_CTX *ctx);
void SSL_free(SSL *ssl);
int SSL_clear(SSL *s);
void SSL_set_bio(SSL *s, BIO *rbio, BIO *wbio);
void SSL_set_connect_state(SSL *s);
void SSL_set_accept_state(SSL *s);
int SSL_do_handshake(SSL *s);
int SSL_read(SSL *ssl, void *buf, int num);
int SSL_shutdown(SSL *s);
int SSL_get_shutdown(const SSL *ssl);
int SSL_get_error(const SSL *s, int ret_code);
int SSL_session_reused(const SSL *s);
SSL_SESSION *SSL_get_session(const SSL *ssl);
SSL_SESSION *SSL_get1_session(SSL *ssl);
int SSL_set_session(SSL *to, SSL_SESSION *session);

SSL_SESSION *SSL_SESSION_new(void);
int SSL_SESSION_up_ref(SSL_SESSION *ses);
void SSL_SESSION_free(SSL_SESSION *ses);
int SSL_SESSION_set1_id(SSL_SESSION *s, const unsigned char *sid, unsigned int sid_len);
long SSL_SESSION_get_time(const SSL_SESSION *s);
long SSL_SESSION_set_time(SSL_SESSION *s, long t);
int SSL_SESSION_is_resumable(const SSL_SESSION *s);
int SSL_SESSION_set1_ticket_appdata(SSL_SESSION *ss, const void *data, size_t len);
int SSL_SESSION_get0_ticket_appdata(SSL_SESSION *ss, void **data, size_t *len);

const BIO_METHOD *BIO_s_mem(void);
BIO *BIO_new(const BIO_METHOD *type);
int BIO_free(BIO *a);
int BIO_read(BIO *b, void *data, int dlen);
int BIO_write(BIO *b, const void *data, int dlen);
size_t BIO_ctrl_pending(BIO *b);
"""
LIBC_CDEF = r"""
size_t malloc_usable_size(void *ptr);
long time(long *t);
"""

# Constants (unchanged 1.1.1 -> master; OPENSSL_FACTS.md "Control constants").
CTRL = {
    "number": 20,
    "connect": 21,
    "connect_good": 22,
    "accept": 24,
    "accept_good": 25,
    "hits": 27,
    "cb_hits": 28,
    "misses": 29,
    "timeouts": 30,
    "cache_full": 31,
}
SSL_CTRL_SET_SESS_CACHE_SIZE = 42
SSL_CTRL_SET_SESS_CACHE_MODE = 44
SSL_CTRL_SET_MIN_PROTO_VERSION = 123
SSL_CTRL_SET_MAX_PROTO_VERSION = 124
SSL_SESS_CACHE_CLIENT = 0x1
SSL_SESS_CACHE_SERVER = 0x2
SSL_OP_NO_TICKET = 1 << 14
SSL_VERIFY_PEER = 0x01
SSL_SENT_SHUTDOWN = 1
SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE, SSL_ERROR_ZERO_RETURN = 2, 3, 6
EVP_PKEY_EC = 408
TLS_VERSION = {"1.2": 0x0303, "1.3": 0x0304}
SSL_TICKET_SUCCESS, SSL_TICKET_SUCCESS_RENEW = 5, 6
SSL_TICKET_RETURN_IGNORE_RENEW, SSL_TICKET_RETURN_USE, SSL_TICKET_RETURN_USE_RENEW = 2, 3, 4


@dataclass(frozen=True)
class Libssl:
    ffi: Any
    lib: Any
    libc: Any
    path: str
    version: str
    offsets: Any
    view: Any  # a _view.View of ssl_session_st: references, owner, prev


_lock = threading.Lock()
_loaded: Libssl | None = None


def _mapped(fragment: str) -> str:
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and os.path.basename(parts[5]).startswith(fragment):
                return parts[5]
    raise SesskitError(f"{fragment} is not loaded in this process (Python's ssl module did not load it)")


def load() -> Libssl:
    """The process's libssl, bound and calibrated (once)."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _load()
        return _loaded


def _load() -> Libssl:
    import ssl  # noqa: F401 - makes CPython load libssl/libcrypto

    from cffi import FFI

    from ._probe import calibrate
    from ._view import View

    if not os.path.exists("/proc/self/maps"):
        raise SesskitError("the libssl engine needs /proc/self/maps (Linux) to find Python's own libssl")
    ssl_path, crypto_path = _mapped("libssl.so"), _mapped("libcrypto.so")
    ffi = FFI()
    ffi.cdef(CDEF)
    try:
        # libssl links libcrypto: ERR_* and BIO_* resolve through it (RTLD_NOLOAD: no second copy).
        ffi.dlopen(crypto_path, ffi.RTLD_NOW | ffi.RTLD_NOLOAD | ffi.RTLD_GLOBAL)
        lib = ffi.dlopen(ssl_path, ffi.RTLD_NOW | ffi.RTLD_NOLOAD)
    except OSError as exc:
        raise SesskitError(f"cannot bind the loaded {ssl_path}: {exc}") from exc
    libc_ffi = FFI()
    libc_ffi.cdef(LIBC_CDEF)
    libc = libc_ffi.dlopen(None)
    version = ffi.string(lib.OpenSSL_version(0)).decode()
    if not version.startswith("OpenSSL 3."):
        raise CalibrationError(f"the libssl engine supports OpenSSL 3.x; Python loaded {version}")
    offsets = calibrate(lib, ffi, libc)
    view = View(
        {
            "references": (offsets.references, "int"),
            "owner": (offsets.owner, "uintptr_t"),
            "prev": (offsets.prev, "uintptr_t"),
        }
    )
    return Libssl(ffi, lib, libc, ssl_path, version, offsets, view)
