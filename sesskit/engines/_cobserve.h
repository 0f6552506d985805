/* sesskit's observation helper: what Python sees of it.  _cobserve_build.py reads this file as the
 * cffi cdef and _cobserve.c includes it, so it holds only what cffi's cdef parser accepts: no
 * includes, no include guard, integer #defines only. */
#define SK_MAX_SEEN 256
#define SK_MAX_CODES 16

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
    int (*SSL_SESSION_is_resumable)(const void *);
    int (*SSL_get_shutdown)(const void *);
} sk_fns;

typedef struct sk_state {
    int64_t epoch;          /* OpenSSL's frozen "now" (seconds) */
    int64_t now;            /* the lab's virtual seconds */
    void *ctx[2];           /* client, server SSL_CTX */
    int n;                  /* sessions pinned since Python last adopted them */
    int overflow;           /* a session could not be pinned: Python raises */
    void *seen[SK_MAX_SEEN];
    int side[SK_MAX_SEEN];  /* 0 client, 1 server */
    /* Read by sk_connect after a handshake that succeeded, before it returns: */
    int off_refs;           /* calibrated offsets (the engine's probe) of SSL_SESSION.references */
    int off_owner;          /* ... and of its cache owner (the SSL_CTX whose cache holds it) */
    int ncodes;             /* SSL_CTX_ctrl codes read from each context: the statistics, then the size */
    int codes[SK_MAX_CODES];
    /* for seen[j], at info[4 * j] on: its side (as side[j]); its references, observer references
     * included; the cache holding it (-1 none, 0 the client's, 1 the server's, 2 another
     * context's); SSL_SESSION_is_resumable */
    int info[4 * SK_MAX_SEEN];
    long ctrl[2 * SK_MAX_CODES]; /* client's values, then server's */
} sk_state;

typedef struct sk_link {
    void *ssl[2];
    void *rbio[2];
    void *wbio[2];
    void *sess[2];          /* each SSL's session when last looked at */
    int result[2];          /* what the last SSL_do_handshake returned */
    int handshaking[2];
    int fresh[2];
    char *out[2];           /* bytes for SSL i that are not a handshake flight: Python queues them */
    int out_len[2];
    int out_cap;
    char *buf;
    int buf_size;
    int reused;             /* SSL_session_reused(client) after the handshake */
    /* When sk_connect returns, for Python to read in one go: ssl[0..1], rbio[0..1], wbio[0..1],
     * sess[0..1]; and after a handshake that succeeded, SSL_get_shutdown of each SSL. */
    void *made[8];
    int shutdown[2];
} sk_link;

void sk_init(const sk_fns *fns);
int sk_connect(sk_state *st, sk_link *L, void *cctx, void *sctx, const void *mem, void *resume);
void sk_ctrl_many(void *const *ctxs, int nctx, const int *codes, int n, long *out);
int sk_new_session_cb(void *ssl, void *sess);
int sk_ticket_gen_cb(void *ssl, void *arg);
int sk_ticket_dec_cb(void *ssl, void *sess, const unsigned char *keyname, size_t keyname_len, int status,
                     void *arg);
