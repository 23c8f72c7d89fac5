/*
 * The macro-shaped part of mod_wsgi_rs: the module record, the command table,
 * hook registration and wrappers for httpd's logging and config-lookup macros.
 * Everything with behaviour lives in Rust (the wsgi_rs_* functions below).
 *
 * The file is named mod_wsgi.c so that the record's name is "mod_wsgi.c": an
 * existing mod_wsgi configuration guarded by <IfModule mod_wsgi.c> keeps
 * taking effect after switching the LoadModule line to this module.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_request.h"
#include "http_connection.h"
#include "http_protocol.h"
#include "mpm_common.h"
#include "apr_buckets.h"

/* Implemented in Rust (src/apache/entry.rs). */
extern const char *wsgi_rs_directive(cmd_parms *cmd, void *dir_config, const char *args);
extern void *wsgi_rs_create_dir_config(apr_pool_t *p, char *dir);
extern void *wsgi_rs_merge_dir_config(apr_pool_t *p, void *base, void *add);
extern void *wsgi_rs_create_server_config(apr_pool_t *p, server_rec *s);
extern void *wsgi_rs_merge_server_config(apr_pool_t *p, void *base, void *add);
extern int wsgi_rs_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s);
extern int wsgi_rs_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s);
extern void wsgi_rs_child_init(apr_pool_t *pchild, server_rec *s);
extern void wsgi_rs_child_stopping(apr_pool_t *pchild, int graceful);
extern int wsgi_rs_handler(request_rec *r);
extern conn_rec *wsgi_rs_create_connection(apr_pool_t *ptrans, server_rec *s, apr_socket_t *csd,
                                           long id, void *sbh, apr_bucket_alloc_t *alloc);


/* Every directive is RAW_ARGS: Rust tokenises (ap_getword_conf) and checks the
 * words itself, so all error texts come from one place. */
#define WSGI_DIRECTIVE(name, where, help) \
    AP_INIT_RAW_ARGS(name, wsgi_rs_directive, NULL, where, help)

static const command_rec wsgi_rs_commands[] = {
    WSGI_DIRECTIVE("WSGIHandlerScript", RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                   "name path [process-group=G] [application-group=A] [pass-authorization=On|Off]"),
    WSGI_DIRECTIVE("WSGIApplicationGroup", RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                   "default application group (Python interpreter) for handlers here"),
    WSGI_DIRECTIVE("WSGIProcessGroup", RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                   "default daemon process group for handlers here"),
    WSGI_DIRECTIVE("WSGIPassAuthorization", RSRC_CONF | ACCESS_CONF | OR_AUTHCFG,
                   "On|Off: pass the Authorization header to the application"),
    WSGI_DIRECTIVE("WSGIScriptReloading", RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                   "On|Off: reload a handler script when its modification time changes"),
    WSGI_DIRECTIVE("WSGIDaemonProcess", RSRC_CONF,
                   "name [processes=N] [threads=N] [user=U] [group=G] [display-name=T] [...]: a daemon process group"),
    WSGI_DIRECTIVE("WSGISocketPrefix", RSRC_CONF,
                   "path prefix for daemon process sockets (default: in DefaultRuntimeDir)"),
    WSGI_DIRECTIVE("WSGIChunkedRequest", RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                   "On|Off: accept chunked request bodies (Off answers 411)"),
    WSGI_DIRECTIVE("WSGIEnableSendfile", RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                   "On|Off: sendfile for wsgi.file_wrapper files (default: as EnableSendfile)"),
    WSGI_DIRECTIVE("WSGIPythonHome", RSRC_CONF,
                   "virtualenv or installation prefix of the Python this module runs"),
    WSGI_DIRECTIVE("WSGIPythonPath", RSRC_CONF,
                   "colon-separated directories added to the front of sys.path"),
    WSGI_DIRECTIVE("WSGIRestrictEmbedded", RSRC_CONF,
                   "On|Off: Python in Apache's children for embedded mode (default: only if a handler may run embedded)"),
    WSGI_DIRECTIVE("WSGICallableObject", RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                   "accepted for compatibility; handler scripts always use handle_request"),
    { NULL }
};

static void wsgi_rs_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_check_config(wsgi_rs_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(wsgi_rs_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(wsgi_rs_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(wsgi_rs_child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(wsgi_rs_handler, NULL, NULL, APR_HOOK_MIDDLE);
    /* Declines always; only notes (prefork) that the child has a connection. */
    ap_hook_create_connection(wsgi_rs_create_connection, NULL, NULL, APR_HOOK_REALLY_FIRST);
}

AP_DECLARE_MODULE(wsgi_rs) = {
    STANDARD20_MODULE_STUFF,
    wsgi_rs_create_dir_config,
    wsgi_rs_merge_dir_config,
    wsgi_rs_create_server_config,
    wsgi_rs_merge_server_config,
    wsgi_rs_commands,
    wsgi_rs_register_hooks,
    AP_MODULE_FLAG_NONE
};

/* ---- wrappers for macros ---- */

void *wsgi_rs_dir_config(ap_conf_vector_t *per_dir_config)
{
    return ap_get_module_config(per_dir_config, &wsgi_rs_module);
}

void *wsgi_rs_server_config(const server_rec *s)
{
    return ap_get_module_config(s->module_config, &wsgi_rs_module);
}

void wsgi_rs_log_server(const server_rec *s, int level, int status, const char *msg)
{
    ap_log_error(APLOG_MARK, level, status, s, "%s", msg);
}

void wsgi_rs_log_request(const request_rec *r, int level, int status, const char *msg)
{
    ap_log_rerror(APLOG_MARK, level, status, r, "%s", msg);
}

int wsgi_rs_server_log_enabled(const server_rec *s, int level)
{
    return APLOG_IS_LEVEL(s, level);
}

int wsgi_rs_request_log_enabled(const request_rec *r, int level)
{
    return APLOG_R_IS_LEVEL(r, level);
}

/* ---- brigade helpers (APR_BRIGADE_* are macros) ---- */

/* Passes data (and optionally a flush) down the output filters. Transient
 * buckets: filters that keep the data copy it. */
apr_status_t wsgi_rs_write(request_rec *r, apr_bucket_brigade *bb, const char *data,
                           apr_size_t len, int flush)
{
    apr_bucket_alloc_t *ba = r->connection->bucket_alloc;
    apr_status_t rv;

    if (len) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_transient_create(data, len, ba));
    }
    if (flush) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(ba));
    }
    rv = ap_pass_brigade(r->output_filters, bb);
    apr_brigade_cleanup(bb);
    if (rv == APR_SUCCESS && r->connection->aborted) {
        rv = APR_ECONNABORTED;
    }
    return rv;
}

/* Reads up to *len request body bytes into buf through the input filters,
 * waiting for at least one: ap_get_client_block, but into a brigade kept for
 * the request. *len is set to the count. APR_EOF: the body has ended; any
 * other status but APR_SUCCESS: the read failed, the connection is not kept. */
apr_status_t wsgi_rs_read(request_rec *r, apr_bucket_brigade *bb, char *buf,
                          apr_size_t *len)
{
    apr_size_t got = *len;
    apr_status_t rv;
    int eos = 0;

    *len = 0;
    if (r->remaining < 0 || (!r->read_chunked && r->remaining == 0)) {
        return APR_EOF;
    }
    rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                        APR_BLOCK_READ, got);
    if (rv == APR_SUCCESS) {
        eos = !APR_BRIGADE_EMPTY(bb) && APR_BUCKET_IS_EOS(APR_BRIGADE_LAST(bb));
        rv = apr_brigade_flatten(bb, buf, &got);
    }
    apr_brigade_cleanup(bb);
    if (rv == APR_SUCCESS) {
        if (eos) {
            /* what ap_get_client_block records: the next read returns 0 */
            r->remaining = r->read_chunked ? -1 : 0;
        }
        r->read_length += got;
        *len = got;
        if (got == 0) {
            /* a blocking read that returns nothing and no EOS is a broken filter */
            rv = eos ? APR_EOF : APR_EGENERAL;
        }
    }
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    return rv;
}

/* Zero-copy body reading for daemon mode: makes sure bb holds request body
 * data (reading up to max bytes through the input filters, waiting for at
 * least one, when it holds none), then describes its leading data, at most
 * max bytes in at most *niov pieces, in iov; sets *niov and *len. The data
 * stays valid until wsgi_rs_body_consumed. APR_EOF: the body has ended;
 * other errors as for wsgi_rs_read. */
apr_status_t wsgi_rs_body_peek(request_rec *r, apr_bucket_brigade *bb, apr_size_t max,
                               struct iovec *iov, int *niov, apr_size_t *len)
{
    int slots = *niov;
    apr_status_t rv = APR_SUCCESS;
    apr_bucket *e;

    *niov = 0;
    *len = 0;
    /* Metadata ahead of the data (other than EOS) is of no use here. */
    while (!APR_BRIGADE_EMPTY(bb) && APR_BUCKET_IS_METADATA(APR_BRIGADE_FIRST(bb))
           && !APR_BUCKET_IS_EOS(APR_BRIGADE_FIRST(bb))) {
        apr_bucket_delete(APR_BRIGADE_FIRST(bb));
    }
    if (APR_BRIGADE_EMPTY(bb)) {
        if (r->remaining < 0 || (!r->read_chunked && r->remaining == 0)) {
            return APR_EOF;
        }
        rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES, APR_BLOCK_READ, max);
        if (rv == APR_SUCCESS && APR_BRIGADE_EMPTY(bb)) {
            rv = APR_EGENERAL; /* a blocking read that returns nothing is a broken filter */
        }
    }
    for (e = APR_BRIGADE_FIRST(bb); rv == APR_SUCCESS && e != APR_BRIGADE_SENTINEL(bb)
                                    && *niov < slots && *len < max;
         e = APR_BUCKET_NEXT(e)) {
        const char *data;
        apr_size_t n;

        if (APR_BUCKET_IS_EOS(e)) {
            break;
        }
        if (APR_BUCKET_IS_METADATA(e)) {
            continue;
        }
        if (e->length != (apr_size_t)-1 && e->length > max - *len) {
            apr_bucket_split(e, max - *len);
        }
        rv = apr_bucket_read(e, &data, &n, APR_BLOCK_READ);
        if (rv == APR_SUCCESS && n > max - *len) {
            apr_bucket_split(e, max - *len);
            n = max - *len;
        }
        if (rv == APR_SUCCESS && n > 0) {
            iov[*niov].iov_base = (void *)data;
            iov[*niov].iov_len = n;
            (*niov)++;
            *len += n;
        }
    }
    if (rv == APR_SUCCESS && *len == 0) {
        /* Only EOS (and metadata) left: the body has ended. */
        r->remaining = r->read_chunked ? -1 : 0;
        apr_brigade_cleanup(bb);
        return APR_EOF;
    }
    if (rv != APR_SUCCESS) {
        apr_brigade_cleanup(bb);
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    return rv;
}

/* Drops the len bytes wsgi_rs_body_peek described (they have been sent). */
void wsgi_rs_body_consumed(request_rec *r, apr_bucket_brigade *bb, apr_size_t len)
{
    r->read_length += len;
    while (len > 0 && !APR_BRIGADE_EMPTY(bb)) {
        apr_bucket *e = APR_BRIGADE_FIRST(bb);

        if (!APR_BUCKET_IS_METADATA(e)) {
            len -= e->length < len ? e->length : len;
        }
        apr_bucket_delete(e);
    }
}

/* Appends len bytes of fd (owned by the request pool) from offset as a file
 * bucket, to be sent as core's default handler sends a static file of the
 * same directory: sendfile only with EnableSendfile On (or sendfile > 0,
 * WSGIEnableSendfile On; 0 is Off, < 0 unset), mmap unless EnableMMAP Off. */
apr_status_t wsgi_rs_insert_file(request_rec *r, apr_bucket_brigade *bb, int fd,
                                 apr_off_t offset, apr_off_t len, int sendfile)
{
    core_dir_config *d = ap_get_core_module_config(r->per_dir_config);
    apr_file_t *file = NULL;
    apr_os_file_t os_fd = fd;
    apr_bucket *e;
    apr_status_t rv;

    if (sendfile < 0) {
        sendfile = d->enable_sendfile == ENABLE_SENDFILE_ON;
    }
    rv = apr_os_file_put(&file, &os_fd, APR_FOPEN_READ | (sendfile ? APR_SENDFILE_ENABLED : 0),
                         r->pool);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    e = apr_brigade_insert_file(bb, file, offset, len, r->pool);
    if (d->enable_mmap == ENABLE_MMAP_OFF) {
        (void)apr_bucket_file_enable_mmap(e, 0);
    }
    return APR_SUCCESS;
}

/* Ends the response with what is queued in bb (if anything): its buckets
 * and EOS go down the output filters in one pass. */
apr_status_t wsgi_rs_end_queued(request_rec *r, apr_bucket_brigade *bb)
{
    apr_status_t rv;

    if (APR_BRIGADE_EMPTY(bb)) {
        return APR_SUCCESS;
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(r->connection->bucket_alloc));
    rv = ap_pass_brigade(r->output_filters, bb);
    apr_brigade_cleanup(bb);
    return rv;
}

/* Ends a response whose body already started as failed, the way mod_proxy
 * reports a backend that broke mid-body: an error bucket makes the chunking
 * filter omit the final chunk and the connection is closed, so the client
 * sees a truncated response rather than a clean end. */
void wsgi_rs_abort(request_rec *r, apr_bucket_brigade *bb)
{
    apr_bucket_alloc_t *ba = r->connection->bucket_alloc;

    /* What is queued (head, file) goes out first: an error bucket ahead of
     * the head would turn the response into an error page. */
    if (!APR_BRIGADE_EMPTY(bb)) {
        ap_pass_brigade(r->output_filters, bb);
        apr_brigade_cleanup(bb);
    }
    r->connection->keepalive = AP_CONN_CLOSE;
    r->no_cache = 1;
    APR_BRIGADE_INSERT_TAIL(bb, ap_bucket_error_create(HTTP_BAD_GATEWAY, NULL, r->pool, ba));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
    ap_pass_brigade(r->output_filters, bb);
    apr_brigade_cleanup(bb);
}

apr_bucket_brigade *wsgi_rs_brigade(request_rec *r)
{
    return apr_brigade_create(r->pool, r->connection->bucket_alloc);
}
