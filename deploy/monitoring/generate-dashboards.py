#!/usr/bin/env python3
"""Writes the Grafana dashboards in dashboards/ from the panels listed here.

    generate-dashboards.py          # (re)writes dashboards/*.json
    generate-dashboards.py --check  # fails if a file differs from what would be written

Edit this file, not the JSON: the five dashboards share their variables (data source, job,
instance), layout and query shape, and deploy/check.sh fails when the two disagree.

Every metric below is one the services export (`metrics::counter!`, `gauge!`, `histogram!` in
crates/ and services/), with the labels of its call site; the scrape adds `job` and
`instance`. Histograms other than http_server_request_duration_seconds are exported as
summaries (quantiles 0, 0.5, 0.9, 0.95, 0.99, 0.999, 1 of each process, with _sum and _count):
their quantiles do not add up across instances, so the panels show the slowest instance's.
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "dashboards"

# Every selector carries both, as the dashboard linter requires.
M = 'job=~"$job", instance=~"$instance"'
DS = {"type": "prometheus", "uid": "${datasource}"}
LAG = f"max by (group, topic, partition) (kafka_consumer_group_lag{{{M}}})"
WAITLIST_GROUPS = 'group=~"email-workers|position-workers|reward-workers"'
RETRY_GROUPS = 'group=~"registration-batcher|dlq-retrier"'


def sel(metric, extra=""):
    return f"{metric}{{{M}{', ' + extra if extra else ''}}}"


def quantile(metric, value, extra=""):
    """A summary's quantile series (`quantile="0.99"`)."""
    return sel(metric, ", ".join(filter(None, [extra, f'quantile="{value}"'])))


def rate(metric, extra=""):
    return f"rate({sel(metric, extra)}[$__rate_interval])"


def mean(metric, extra="", by=""):
    """The mean of a summary over the interval: its sum's rate over its count's."""
    group = f" by ({by})" if by else ""
    return f"sum{group} ({rate(metric + '_sum', extra)}) / sum{group} ({rate(metric + '_count', extra)})"


def q(expr, legend):
    return {"expr": expr, "legendFormat": legend}


def timeseries(title, description, unit, *queries, stack=False, width=12):
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "unit": unit,
        "queries": queries,
        "stack": stack,
        "width": width,
    }


def stat(title, description, unit, *queries, width=12, mappings=None):
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "unit": unit,
        "queries": queries,
        "width": width,
        "mappings": mappings,
    }


def row(title):
    return {"type": "row", "title": title}


def variables():
    query = lambda name, label, expr: {  # noqa: E731
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": expr, "refId": f"{label}Variable"},
        "definition": expr,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".+",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
    }
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
        },
        # service_info is exported by every service, from its start.
        query("job", "Job", "label_values(service_info, job)"),
        query("instance", "Instance", 'label_values(service_info{job=~"$job"}, instance)'),
    ]


def render_panel(spec, panel_id, x, y, height):
    if spec["type"] == "row":
        return {
            "id": panel_id,
            "type": "row",
            "title": spec["title"],
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": [],
        }
    targets = [
        {"datasource": DS, "expr": query["expr"], "legendFormat": query["legendFormat"], "refId": chr(ord("A") + i)}
        for i, query in enumerate(spec["queries"])
    ]
    panel = {
        "id": panel_id,
        "type": spec["type"],
        "title": spec["title"],
        "description": spec["description"],
        "datasource": DS,
        "gridPos": {"h": height, "w": spec["width"], "x": x, "y": y},
        "targets": targets,
    }
    if spec["type"] == "timeseries":
        panel["fieldConfig"] = {
            "defaults": {
                "unit": spec["unit"],
                "min": 0,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 20 if spec["stack"] else 0,
                    "showPoints": "never",
                    "stacking": {"mode": "normal" if spec["stack"] else "none", "group": "A"},
                },
            },
            "overrides": [],
        }
        panel["options"] = {
            "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        panel["fieldConfig"] = {"defaults": {"unit": spec["unit"], "mappings": spec["mappings"] or []}, "overrides": []}
        panel["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "auto",
            "orientation": "auto",
        }
    return panel


def dashboard(uid, title, description, specs):
    # Left to right, then the next line; a row starts a line of its own.
    panels, x, y, line_height = [], 0, 0, 0
    for panel_id, spec in enumerate(specs, start=1):
        height = {"row": 1, "timeseries": 8, "stat": 4}[spec["type"]]
        width = 24 if spec["type"] == "row" else spec["width"]
        if x + width > 24:
            x, y, line_height = 0, y + line_height, 0
        panels.append(render_panel(spec, panel_id, x, y, height))
        x, line_height = x + width, max(line_height, height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["signup-platform"],
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "links": [
            {
                "title": "Signup platform",
                "type": "dashboards",
                "tags": ["signup-platform"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "annotations": {"list": []},
        "templating": {"list": variables()},
        "panels": panels,
    }


def registration():
    batcher = 'group="registration-batcher"'
    return dashboard(
        "signup-registration",
        "Signup platform / Registration",
        "Asynchronous registration: the gateway queues requests on user.registration, the "
        "registration-batcher writes them in batches, the dlq-retrier retries what failed.",
        [
            row("Throughput"),
            timeseries(
                "Registrations accepted and created",
                "Requests the gateway accepted and queued (register-async and bulk), and users "
                "the batcher and the retrier created.",
                "ops",
                q(f"sum({rate('gateway_registrations_accepted_total')})", "accepted (gateway)"),
                q(f"sum({rate('registrations_created_total')})", "created"),
            ),
            timeseries(
                "Outcomes",
                "What became of each request written: created, already done (a replay), refused "
                "(by error code, e.g. already_registered), queued for a retry, or failed for good "
                "after its last retry.",
                "ops",
                q(f"sum({rate('registrations_created_total')})", "created"),
                q(f"sum({rate('registrations_replayed_total')})", "already done (replay)"),
                q(f"sum by (code) ({rate('registrations_refused_total')})", "refused: {{code}}"),
                q(f"sum({rate('registrations_queued_for_retry_total')})", "queued for retry"),
                q(f"sum({rate('registrations_retries_exhausted_total')})", "retries exhausted"),
                stack=True,
            ),
            row("Batches"),
            timeseries(
                "Batches flushed, by reason",
                "Batches the registration-batcher wrote, by what closed them: size "
                "(BATCH_MAX_SIZE), linger (BATCH_LINGER), max_wait (BATCH_MAX_WAIT), idle "
                "(BATCH_IDLE_TIMEOUT) or shutdown.",
                "ops",
                q(f"sum by (reason) ({rate('kafka_consumer_batch_size_count', batcher)})", "{{reason}}"),
                stack=True,
            ),
            timeseries(
                "Batch size",
                "Requests per batch: the mean over the interval, and the median and 99th "
                "percentile of the instance with the largest.",
                "short",
                q(mean("kafka_consumer_batch_size", batcher), "mean"),
                q(f"max({quantile('kafka_consumer_batch_size', '0.5', batcher)})", "p50"),
                q(f"max({quantile('kafka_consumer_batch_size', '0.99', batcher)})", "p99"),
            ),
            row("Writes"),
            timeseries(
                "Batch write latency",
                "One batch's write to PostgreSQL, its retries of transient failures included "
                "(registration_write_duration_seconds): mean, and the slowest instance's p50 "
                "and p99.",
                "s",
                q(mean("registration_write_duration_seconds"), "mean"),
                q(f"max({quantile('registration_write_duration_seconds', '0.5')})", "p50"),
                q(f"max({quantile('registration_write_duration_seconds', '0.99')})", "p99"),
            ),
            timeseries(
                "Transaction latency",
                "One write transaction (registration_transaction_duration_seconds): mean, and "
                "the slowest instance's p50 and p99.",
                "s",
                q(mean("registration_transaction_duration_seconds"), "mean"),
                q(f"max({quantile('registration_transaction_duration_seconds', '0.5')})", "p50"),
                q(f"max({quantile('registration_transaction_duration_seconds', '0.99')})", "p99"),
            ),
            row("Retries and dead letters"),
            timeseries(
                "Retry queue (user.registration.dlq)",
                "Requests queued for a retry by the batcher, retries the dlq-retrier made, those "
                "that succeeded, and requests that failed for good (status failed, "
                "retries_exhausted).",
                "ops",
                q(f"sum({rate('registrations_queued_for_retry_total')})", "queued for retry"),
                q(f"sum({rate('registration_retries_total')})", "retried"),
                q(f"sum({rate('registration_retries_succeeded_total')})", "succeeded on retry"),
                q(f"sum({rate('registrations_retries_exhausted_total')})", "retries exhausted"),
            ),
            timeseries(
                "Dead letters",
                "Messages the batcher and the retrier dead-lettered: undecodable requests, and "
                "failures past their tries.",
                "ops",
                q(
                    f"sum by (group) ({rate('kafka_consumer_messages_dead_lettered_total', RETRY_GROUPS)})",
                    "{{group}}",
                ),
            ),
            stat(
                "Retries exhausted",
                "Registrations that failed for good in the dashboard's time range.",
                "short",
                q(f"sum(increase({sel('registrations_retries_exhausted_total')}[$__range]))", "exhausted"),
            ),
            stat(
                "Refused",
                "Registrations refused in the dashboard's time range (already registered, "
                "invalid and the like).",
                "short",
                q(f"sum(increase({sel('registrations_refused_total')}[$__range]))", "refused"),
            ),
            row("Password hashing (gateway)"),
            timeseries(
                "Hashes running",
                "Argon2id hashes computing now, per gateway (at most HASH_WORKERS each).",
                "short",
                q(f"sum by (instance) ({sel('gateway_password_hashes_running')})", "{{instance}}"),
                width=8,
            ),
            timeseries(
                "Hashes refused (503)",
                "Requests refused at once because the hashing queue (HASH_QUEUE_CAPACITY, or the "
                "bulk lane's HASH_BULK_SHARE of it) was full: they got 503 with Retry-After.",
                "ops",
                q(f"sum by (instance) ({rate('gateway_password_hash_refused_total')})", "{{instance}}"),
                width=8,
            ),
            timeseries(
                "Hash time, queue wait included",
                "From asking for a hash to having it: 99th percentile per gateway. Rising while "
                "hashes running stays at its maximum means requests queue for the workers.",
                "s",
                q(f"max by (instance) ({quantile('gateway_password_hash_seconds', '0.99')})", "{{instance}}"),
                width=8,
            ),
        ],
    )


def waitlist():
    return dashboard(
        "signup-waitlist",
        "Signup platform / Waitlist",
        "The waitlist's domain events (domain-events, written by the gateway's outbox relay) "
        "and the three worker groups reading them: email-workers, position-workers, "
        "reward-workers. No metric counts referrals flagged by the fraud rules.",
        [
            row("Events"),
            timeseries(
                "Domain events handled, by group",
                "Messages each worker group finished (handled or skipped as not its own).",
                "ops",
                q(f"sum by (group) ({rate('kafka_consumer_messages_handled_total', WAITLIST_GROUPS)})", "{{group}}"),
            ),
            timeseries(
                "Events published and skipped",
                "Domain events the gateway's outbox relay published, and events the workers "
                "skipped for a type their version does not know.",
                "ops",
                q(f"sum({rate('waitlist_outbox_relayed_total')})", "published (outbox relay)"),
                q(f"sum by (job, reason) ({rate('domain_events_skipped_total')})", "skipped by {{job}}: {{reason}}"),
            ),
            row("Emails and texts"),
            timeseries(
                "Emails sent, by template",
                "Emails the email-worker sent (waitlist and account messages).",
                "ops",
                q(f"sum by (template) ({rate('emails_sent_total')})", "{{template}}"),
                stack=True,
                width=8,
            ),
            timeseries(
                "Emails not sent again, by template",
                "Emails already sent for that event and recipient (a replayed event): skipped, "
                "so nothing is sent twice.",
                "ops",
                q(f"sum by (template) ({rate('emails_skipped_total')})", "{{template}}"),
                width=8,
            ),
            timeseries(
                "Texts sent, by template",
                "Text messages (phone codes) the email-worker sent.",
                "ops",
                q(f"sum by (template) ({rate('texts_sent_total')})", "{{template}}"),
                width=8,
            ),
            row("Positions"),
            timeseries(
                "Positions recalculated",
                "Campaigns whose positions the position-workers recalculated after a verified "
                "referral, and events that found them up to date already (a replay, or one of a "
                "burst).",
                "ops",
                q(f"sum({rate('waitlist_position_recalculation_seconds_count')})", "recalculated"),
                q(f"sum({rate('waitlist_position_recalculations_skipped_total')})", "already up to date"),
            ),
            timeseries(
                "Recalculation time",
                "One campaign's recalculation: mean, and the slowest instance's p50 and p99.",
                "s",
                q(mean("waitlist_position_recalculation_seconds"), "mean"),
                q(f"max({quantile('waitlist_position_recalculation_seconds', '0.5')})", "p50"),
                q(f"max({quantile('waitlist_position_recalculation_seconds', '0.99')})", "p99"),
            ),
            row("Rewards"),
            timeseries(
                "Rewards delivered, by method",
                "Rewards the reward-workers delivered (webhook, email, …).",
                "ops",
                q(f"sum by (method) ({rate('rewards_delivered_total')})", "{{method}}"),
            ),
            timeseries(
                "Rewards failed, by method",
                "Rewards whose delivery failed for good after its attempts (then dead-lettered "
                "on waitlist.dlq).",
                "ops",
                q(f"sum by (method) ({rate('rewards_failed_total')})", "{{method}}"),
            ),
            row("Failures"),
            timeseries(
                "Dead letters (waitlist.dlq), by group",
                "Domain events a worker group could not handle, after its retries.",
                "ops",
                q(f"sum by (group) ({rate('kafka_consumer_messages_dead_lettered_total', WAITLIST_GROUPS)})", "{{group}}"),
            ),
            timeseries(
                "Retries, by group",
                "Handler attempts that failed transiently and were tried again.",
                "ops",
                q(f"sum by (group) ({rate('kafka_consumer_messages_retried_total', WAITLIST_GROUPS)})", "{{group}}"),
            ),
        ],
    )


def activity():
    group = 'group="user-activity-processor"'
    return dashboard(
        "signup-activity",
        "Signup platform / Activity log",
        "User activity events: the gateway publishes them on user-activity-logs, the "
        "activity-log-processor (group user-activity-processor) stores them in batches.",
        [
            row("Throughput"),
            timeseries(
                "Events accepted, stored and duplicate",
                "Events the gateway accepted (POST /activity-logs and its own), events stored, "
                "and events already stored (a replay: skipped).",
                "ops",
                q(f"sum({rate('gateway_activity_events_accepted_total')})", "accepted (gateway)"),
                q(f"sum({rate('activity_logs_stored_total')})", "stored"),
                q(f"sum({rate('activity_logs_duplicates_total')})", "duplicates"),
            ),
            timeseries(
                "Duplicate share",
                "Duplicates among the events the processor wrote: high after a replay or a "
                "rebalance, near zero otherwise.",
                "percentunit",
                q(
                    f"sum({rate('activity_logs_duplicates_total')}) / "
                    f"(sum({rate('activity_logs_stored_total')}) + sum({rate('activity_logs_duplicates_total')}))",
                    "duplicates",
                ),
            ),
            row("Batches and writes"),
            timeseries(
                "Insert latency",
                "One batch's insert: mean, and the slowest instance's p50 and p99.",
                "s",
                q(mean("activity_logs_insert_duration_seconds"), "mean"),
                q(f"max({quantile('activity_logs_insert_duration_seconds', '0.5')})", "p50"),
                q(f"max({quantile('activity_logs_insert_duration_seconds', '0.99')})", "p99"),
            ),
            timeseries(
                "Batch size",
                "Events per batch: the mean, and the largest instance's p99.",
                "short",
                q(mean("kafka_consumer_batch_size", group), "mean"),
                q(f"max({quantile('kafka_consumer_batch_size', '0.99', group)})", "p99"),
            ),
            row("Failures and lag"),
            timeseries(
                "Dead letters and retries",
                "Events sent to user-activity-logs-dlq (invalid, or failing after their retries), "
                "and retried attempts.",
                "ops",
                q(f"sum({rate('kafka_consumer_messages_dead_lettered_total', group)})", "dead-lettered"),
                q(f"sum({rate('kafka_consumer_messages_retried_total', group)})", "retried"),
                width=8,
            ),
            timeseries(
                "Lag",
                "Messages of user-activity-logs not yet handled by the group.",
                "short",
                q(f"sum(max by (group, topic, partition) (kafka_consumer_group_lag{{{M}, {group}}}))", "lag"),
                width=8,
            ),
            timeseries(
                "Analytics alerts, by rule",
                "Alerts the analytics rules raised on user-activity-analytics, and those that "
                "could not be published.",
                "ops",
                q(f"sum by (rule) ({rate('activity_analytics_alerts_total')})", "{{rule}}"),
                q(f"sum by (rule) ({rate('activity_analytics_alerts_lost_total')})", "lost: {{rule}}"),
                width=8,
            ),
        ],
    )


def kafka():
    return dashboard(
        "signup-kafka",
        "Signup platform / Kafka",
        "Every consumer group: lag, flow, dead letters, paused and stalled members; the "
        "producers; readiness of the services.",
        [
            row("Lag"),
            timeseries(
                "Lag, by group",
                "Messages not yet committed by each group, summed over its partitions "
                "(kafka_consumer_group_lag: end offset minus the group's committed offset, "
                "reported by every member, idle ones too).",
                "short",
                q(f"sum by (group) ({LAG})", "{{group}}"),
            ),
            timeseries(
                "Lag, by partition",
                "The same per topic and partition: one partition far behind the others points "
                "at a slow or poison key.",
                "short",
                q(LAG, "{{group}} {{topic}}/{{partition}}"),
            ),
            row("Flow"),
            timeseries(
                "Consumed, by group",
                "Messages the members took from the broker.",
                "ops",
                q(f"sum by (group) ({rate('kafka_consumer_messages_consumed_total')})", "{{group}}"),
                width=8,
            ),
            timeseries(
                "Handled, by group",
                "Messages finished (handled, or skipped as not the group's).",
                "ops",
                q(f"sum by (group) ({rate('kafka_consumer_messages_handled_total')})", "{{group}}"),
                width=8,
            ),
            timeseries(
                "Handler time p99, by group",
                "The 99th percentile of one handler call, for the slowest member of each group.",
                "s",
                q(f"max by (group) ({quantile('kafka_consumer_handler_duration_seconds', '0.99')})", "{{group}}"),
                width=8,
            ),
            row("Dead letters and retries"),
            timeseries(
                "Dead-lettered, by group",
                "Messages each group sent to its dead-letter topic.",
                "ops",
                q(f"sum by (group) ({rate('kafka_consumer_messages_dead_lettered_total')})", "{{group}}"),
                width=8,
            ),
            timeseries(
                "Retried, by group",
                "Handler attempts tried again after a transient failure.",
                "ops",
                q(f"sum by (group) ({rate('kafka_consumer_messages_retried_total')})", "{{group}}"),
                width=8,
            ),
            timeseries(
                "Producer dead letters (events-dlq)",
                "Records producers could not deliver and wrote to events-dlq, counted since each "
                "process started (kafka_dead_letter_queue_size).",
                "short",
                q(f"sum by (job) ({sel('kafka_dead_letter_queue_size')})", "dead-lettered by {{job}}"),
                width=8,
            ),
            row("Members"),
            timeseries(
                "Paused members, by group",
                "Members holding all their partitions (kafka_consumer_paused): too much in "
                "flight, or a database outage. Lag that grows while paused means the database "
                "is down.",
                "short",
                q(f"sum by (group) ({sel('kafka_consumer_paused')})", "{{group}}"),
                width=8,
            ),
            timeseries(
                "Stalled and stopped members, by group",
                "Members with messages in flight and none finished (stalled), and members "
                "stopped by the dead-letter limit. Either makes /readyz answer not ready.",
                "short",
                q(f"sum by (group) ({sel('kafka_consumer_stalled')})", "stalled: {{group}}"),
                q(f"sum by (group) ({sel('kafka_consumer_dlq_limit_reached')})", "dead-letter limit: {{group}}"),
                width=8,
            ),
            timeseries(
                "Dependency unavailable, by group",
                "Handler results saying a dependency (the database) is down: the group holds "
                "its messages instead of counting tries.",
                "ops",
                q(f"sum by (group) ({rate('kafka_consumer_dependency_unavailable_total')})", "{{group}}"),
                width=8,
            ),
            row("Producers"),
            timeseries(
                "Published, by topic",
                "Records the producers delivered.",
                "ops",
                q(f"sum by (topic) ({rate('kafka_messages_sent_total')})", "{{topic}}"),
                width=8,
            ),
            timeseries(
                "Publish retries, by topic",
                "Publish attempts tried again after a retriable failure.",
                "ops",
                q(f"sum by (topic) ({rate('kafka_retry_attempts_total')})", "{{topic}}"),
                width=8,
            ),
            timeseries(
                "Publishes failed, by topic",
                "Records not delivered after their retries (then dead-lettered to events-dlq).",
                "ops",
                q(f"sum by (topic) ({rate('kafka_messages_failed_total')})", "{{topic}}"),
                width=8,
            ),
            row("Readiness"),
            timeseries(
                "Ready instances, by service",
                "Instances whose /readyz answers ready (service_ready), per job.",
                "short",
                q(f"sum by (job) ({sel('service_ready')})", "{{job}}"),
            ),
            timeseries(
                "Dependencies down, by service",
                "Instances whose last readiness probe found the database or the broker down.",
                "short",
                q(f"count by (job, dependency) ({sel('service_dependency_up')} == 0)", "{{job}}: {{dependency}}"),
            ),
        ],
    )


def http():
    five = 'status=~"5.."'
    four = 'status=~"4.."'
    return dashboard(
        "signup-http",
        "Signup platform / HTTP",
        "The gateway's API: requests, errors and latency per route (the route template, never "
        "the path), rate limits, sign-ins.",
        [
            row("Requests"),
            timeseries(
                "Requests, by route",
                "Requests answered, per method and route template.",
                "reqps",
                q(f"sum by (method, route) ({rate('http_server_requests_total')})", "{{method}} {{route}}"),
            ),
            timeseries(
                "Requests, by status",
                "Requests answered, per status code.",
                "reqps",
                q(f"sum by (status) ({rate('http_server_requests_total')})", "{{status}}"),
                stack=True,
            ),
            row("Errors"),
            timeseries(
                "Server errors (5xx), by route",
                "Answers with a 5xx status. A 503 from a full hashing queue counts here too "
                "(see the registration dashboard).",
                "reqps",
                q(f"sum by (method, route, status) ({rate('http_server_requests_total', five)})", "{{status}} {{method}} {{route}}"),
                width=8,
            ),
            timeseries(
                "Server error share",
                "5xx answers among all answers.",
                "percentunit",
                q(
                    f"sum({rate('http_server_requests_total', five)}) / sum({rate('http_server_requests_total')})",
                    "5xx",
                ),
                width=8,
            ),
            timeseries(
                "Client errors (4xx), by status",
                "Answers with a 4xx status: refused input, missing or wrong tokens, rate limits "
                "(429).",
                "reqps",
                q(f"sum by (status) ({rate('http_server_requests_total', four)})", "{{status}}"),
                width=8,
            ),
            row("Latency"),
            timeseries(
                "Latency p99, by route",
                "99th percentile of the time to answer, per route, from the histogram of every "
                "gateway.",
                "s",
                q(
                    f"histogram_quantile(0.99, sum by (route, le) ({rate('http_server_request_duration_seconds_bucket')}))",
                    "{{route}}",
                ),
            ),
            timeseries(
                "Latency p50, by route",
                "Median time to answer, per route.",
                "s",
                q(
                    f"histogram_quantile(0.5, sum by (route, le) ({rate('http_server_request_duration_seconds_bucket')}))",
                    "{{route}}",
                ),
            ),
            row("Limits and sign-ins"),
            timeseries(
                "Rate limited, by policy",
                "Requests refused with 429 per rate-limit policy, per-identifier throttles, and "
                "hits counted in a replica's memory because the database was unreachable.",
                "ops",
                q(f"sum by (policy) ({rate('gateway_rate_limited_total')})", "policy {{policy}}"),
                q(f"sum by (what) ({rate('gateway_throttled_total')})", "throttled: {{what}}"),
                q(f"sum({rate('gateway_rate_limit_local_total')})", "counted locally"),
                width=8,
            ),
            timeseries(
                "Sign-ins, by outcome",
                "Sign-in attempts: success, or why they failed.",
                "ops",
                q(f"sum by (outcome) ({rate('gateway_sign_ins_total')})", "{{outcome}}"),
                stack=True,
                width=8,
            ),
            timeseries(
                "Security and telemetry losses",
                "Refresh tokens used twice (their session revoked), API events dropped before "
                "publishing, and register-sync users whose user.registered was not published.",
                "ops",
                q(f"sum({rate('gateway_refresh_token_reuse_total')})", "refresh token reuse"),
                q(f"sum by (reason) ({rate('gateway_api_events_dropped_total')})", "API events dropped: {{reason}}"),
                q(f"sum({rate('gateway_user_registered_unpublished_total')})", "user.registered unpublished"),
                width=8,
            ),
        ],
    )


DASHBOARDS = {
    "registration.json": registration,
    "waitlist.json": waitlist,
    "activity.json": activity,
    "kafka.json": kafka,
    "http.json": http,
}


def main():
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        sys.exit(__doc__)
    stale = []
    OUT.mkdir(exist_ok=True)
    for name, build in DASHBOARDS.items():
        text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        sys.exit(f"not what deploy/monitoring/generate-dashboards.py writes: {', '.join(stale)}")
    print(f"{len(DASHBOARDS)} dashboards {'up to date' if check else 'written'} in {OUT}")


if __name__ == "__main__":
    main()
