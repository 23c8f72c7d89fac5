/* What bindgen sees: the httpd and APR API the Rust side calls. */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_script.h"
#include "ap_mpm.h"
#include "apr_strings.h"
#include "apr_tables.h"
#include "apr_buckets.h"
#include "util_filter.h"
#include "mpm_common.h"
#include "apr_md5.h"
#include "ap_listen.h"
#include "unixd.h"
#include "apr_thread_proc.h"
#include "scoreboard.h"

/* From the shim (src/shim/mod_wsgi.c). */
void *wsgi_rs_dir_config(ap_conf_vector_t *per_dir_config);
void *wsgi_rs_server_config(const server_rec *s);
void wsgi_rs_log_server(const server_rec *s, int level, int status, const char *msg);
void wsgi_rs_log_request(const request_rec *r, int level, int status, const char *msg);
int wsgi_rs_server_log_enabled(const server_rec *s, int level);
int wsgi_rs_request_log_enabled(const request_rec *r, int level);
apr_status_t wsgi_rs_write(request_rec *r, apr_bucket_brigade *bb, const char *data, apr_size_t len, int flush);
void wsgi_rs_abort(request_rec *r, apr_bucket_brigade *bb);
apr_status_t wsgi_rs_end_queued(request_rec *r, apr_bucket_brigade *bb);
apr_status_t wsgi_rs_body_peek(request_rec *r, apr_bucket_brigade *bb, apr_size_t max, struct iovec *iov, int *niov, apr_size_t *len);
void wsgi_rs_body_consumed(request_rec *r, apr_bucket_brigade *bb, apr_size_t len);
apr_status_t wsgi_rs_insert_file(request_rec *r, apr_bucket_brigade *bb, int fd, apr_off_t offset, apr_off_t len, int sendfile);
apr_bucket_brigade *wsgi_rs_brigade(request_rec *r);
apr_status_t wsgi_rs_read(request_rec *r, apr_bucket_brigade *bb, char *buf,
                          apr_size_t *len);
