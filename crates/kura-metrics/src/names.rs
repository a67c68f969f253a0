//! Every metric name Kura exports, with its description (the `# HELP`
//! line). The dashboard and alert rules in `deploy/` use only these names
//! (a test checks them against a live `/metrics`).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const BUILD_INFO: &str = "kura_build_info";
pub const HTTP_DURATION: &str = "kura_http_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "kura_http_requests_in_flight";
pub const HTTP_RECEIVED: &str = "kura_http_received_bytes_total";
pub const HTTP_SENT: &str = "kura_http_sent_bytes_total";
pub const UPLOADS_IN_FLIGHT: &str = "kura_uploads_in_flight";
pub const BLOB_DURATION: &str = "kura_blob_store_operation_duration_seconds";
pub const BLOB_ERRORS: &str = "kura_blob_store_errors_total";
pub const DB_DURATION: &str = "kura_database_query_duration_seconds";
pub const DB_UP: &str = "kura_database_up";
pub const BLOB_UP: &str = "kura_blob_store_up";
pub const SCHEMA_VERSION: &str = "kura_schema_version";
pub const SCHEMA_CURRENT: &str = "kura_schema_version_expected";
pub const JOBS: &str = "kura_jobs";
pub const JOB_FAILURES: &str = "kura_job_failures_total";
pub const JOB_RUNS: &str = "kura_job_runs_total";
pub const VULNDB_IMPORTED: &str = "kura_vulndb_last_import_timestamp_seconds";
pub const SCAN_COMPLETED: &str = "kura_scan_last_completed_timestamp_seconds";
pub const DISK_FREE: &str = "kura_data_dir_free_bytes";
pub const DISK_SIZE: &str = "kura_data_dir_size_bytes";
pub const PTC_HITS: &str = "kura_pull_through_cache_hits_total";
pub const PTC_MISSES: &str = "kura_pull_through_cache_misses_total";
pub const PTC_ERRORS: &str = "kura_pull_through_cache_errors_total";
pub const PTC_FETCHES: &str = "kura_pull_through_upstream_fetches_total";
pub const PTC_BYTES: &str = "kura_pull_through_upstream_bytes_total";
pub const PTC_STALE: &str = "kura_pull_through_stale_served_total";
pub const DISK_FULL: &str = "kura_disk_full_events_total";
pub const SAMPLER_ERRORS: &str = "kura_metrics_sampler_errors_total";

/// Describe every metric (their `# HELP` and `# TYPE` lines).
pub fn describe() {
    describe_gauge!(BUILD_INFO, "Kura's version (label), always 1");
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP requests by api, operation, status class and plane: time from the request head to the response head"
    );
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being served, by plane");
    describe_counter!(HTTP_RECEIVED, Unit::Bytes, "Request body bytes received, by plane");
    describe_counter!(HTTP_SENT, Unit::Bytes, "Response body bytes sent, by plane");
    describe_gauge!(
        UPLOADS_IN_FLIGHT,
        "Blob upload requests (POST, PATCH, PUT of an upload) whose body is streaming"
    );
    describe_histogram!(
        BLOB_DURATION,
        Unit::Seconds,
        "Blob store calls by operation (read: until the stream opens)"
    );
    describe_counter!(BLOB_ERRORS, "Blob store calls that failed, by operation");
    describe_histogram!(
        DB_DURATION,
        Unit::Seconds,
        "Metadata database statements by kind (select, insert, update, delete, other)"
    );
    describe_gauge!(DB_UP, "1 if the metadata database answered the last probe");
    describe_gauge!(BLOB_UP, "1 if the blob store answered the last probe");
    describe_gauge!(SCHEMA_VERSION, "The metadata database's schema version");
    describe_gauge!(SCHEMA_CURRENT, "The schema version this Kura migrates to");
    describe_gauge!(
        JOBS,
        "Background jobs by kind and state (queued, running, dead; dead ones are dead letters)"
    );
    describe_counter!(
        JOB_FAILURES,
        "Job attempts that failed on this node, by kind and outcome (retry or dead)"
    );
    describe_counter!(
        JOB_RUNS,
        "Job attempts run on this node, by kind and result (ok, failed)"
    );
    describe_gauge!(
        VULNDB_IMPORTED,
        "When the newest vulnerability database import completed (0: never)"
    );
    describe_gauge!(SCAN_COMPLETED, "When the newest image scan completed (0: never)");
    describe_gauge!(
        DISK_FREE,
        Unit::Bytes,
        "Bytes available to Kura on the data directory's filesystem"
    );
    describe_gauge!(DISK_SIZE, Unit::Bytes, "Size of the data directory's filesystem");
    describe_counter!(PTC_HITS, "Pull-through cache: requests served from the cache");
    describe_counter!(
        PTC_MISSES,
        "Pull-through cache: requests for content the cache did not hold"
    );
    describe_counter!(
        PTC_ERRORS,
        "Pull-through cache: upstream fetches and refreshes that failed"
    );
    describe_counter!(
        PTC_FETCHES,
        "Pull-through cache: manifest and blob fetches from upstreams"
    );
    describe_counter!(
        PTC_BYTES,
        Unit::Bytes,
        "Pull-through cache: blob bytes read from upstreams"
    );
    describe_counter!(
        PTC_STALE,
        "Pull-through cache: cached tags served because their refresh failed"
    );
    describe_counter!(
        DISK_FULL,
        "Writes that found the data directory's disk full (the reserve is released then)"
    );
    describe_counter!(
        SAMPLER_ERRORS,
        "Metric samples that failed (database or blob store errors), by source"
    );
}
