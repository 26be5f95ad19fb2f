"""Words for the generated configuration reference that the schema itself does not hold:
descriptions of keys by (model, field), and defaults that are not plain values.

:mod:`bot.config.reference` reads these; a test keeps the table complete.
"""

from __future__ import annotations

DESCRIPTIONS: dict[tuple[str, str], str] = {
    # Config
    ("Config", "roles"): "Named groups of people. Other keys refer to these names.",
    ("Config", "probes"): "Probes by name, for environments and checklist items to use.",
    ("Config", "environments"): "Deploy targets by name (`prod`, `staging`); at least one.",
    # Environment
    ("Environment", "channel"): "Where sessions are posted and worked.",
    ("Environment", "incident_channel"): "Where incident threads open when a probe fails.",
    ("Environment", "checklist"): "The checklist file (YAML or Markdown), relative to the "
    "config file.",
    ("Environment", "starters"): "Roles that may start a deploy here (and lock or unlock it).",
    ("Environment", "operators"): "Roles that run a session besides its requester: start and "
    "finish the deployment, run probes, abort.",
    ("Environment", "oncall"): "Roles paged and asked to respond to incidents (acknowledge, "
    "roll back, resolve), with the sign-off roles.",
    ("Environment", "signoffs"): "Sign-offs a deploy needs, each from its own roles.",
    ("Environment", "separation_of_duties"): "Whether the requester is refused as a signer "
    "of their own deploy.",
    ("Environment", "gates"): "What must be in before deploying starts and before the "
    "deploy completes.",
    ("Environment", "probes"): "Probes that run for every session, linked to an item or not.",
    ("Environment", "pagerduty"): "Page on-call when a critical probe fails; no paging if absent.",
    ("Environment", "rollback"): "What the Roll back button runs, in order.",
    ("Environment", "deploy"): "What *Start deployment* runs: the bot deploys, then verifies; "
    "without it, people deploy and click *Deployed: verify*.",
    ("Environment", "services"): "Settings of one service (`/deploy start prod api v1`): its "
    "own `deploy` steps.",
    # Deploy steps
    ("DeployPlan", "on_failure"): "When a step fails: `rollback` stops and runs the "
    "environment's `rollback`; `ask` pages and offers *Roll back* and *Retry step*.",
    ("DeployPlan", "steps"): "The steps, run in order, each exactly once.",
    ("ServiceSettings", "deploy"): "The service's steps, instead of the environment's.",
    ("KubernetesStep", "deployments"): "The Deployments whose containers get the new image.",
    ("KubernetesStep", "namespace"): "Their namespace.",
    ("KubernetesStep", "context"): "The kubeconfig context; unset: the current one.",
    ("CommandStep", "argv"): "The command and its arguments, each a template; no shell.",
    ("CommandStep", "env"): "Variables passed through to it (their values are masked in "
    "its output); nothing else of the bot's environment is.",
    ("CommandStep", "timeout"): "How long it may run before it is killed and the step fails.",
    ("PauseStep", "duration"): "Wait this long, then go on.",
    ("PauseStep", "continue_by"): "Wait until a member of these roles clicks *Continue*.",
    ("PauseStep", "timeout"): "How long to wait for *Continue*.",
    ("PauseStep", "on_timeout"): "What happens when nobody continued in time: `fail` the "
    "step, or `continue`.",
    ("Environment", "monitoring"): "Re-run the probes on a schedule after the deploy; no "
    "monitoring if absent.",
    ("Environment", "reminders"): "Nudge missing sign-offs; no reminders if absent.",
    ("Environment", "expire_after"): "A session still open this long is aborted and frees "
    "the environment.",
    ("Environment", "freezes"): "Change freezes: while one is on, deploys neither start nor "
    "deploy, unless a `freeze_override` role overrides it with a reason.",
    # Freezes
    ("FreezeBase", "reason"): "What the freeze is for (`Black Friday`), shown when it refuses.",
    ("FreezeBase", "timezone"): "The IANA time zone (`Europe/Berlin`) the freeze is read and "
    "shown in.",
    ("RecurringFreeze", "rrule"): "When it starts, as an iCalendar RRULE on the wall clock of "
    "`timezone` (`FREQ=WEEKLY;BYDAY=FR;BYHOUR=15`): the same local time on both sides of a "
    "daylight-saving change.",
    ("RecurringFreeze", "duration"): "How long each occurrence lasts, on the wall clock "
    "(`66h` from Friday 15:00 ends Monday 09:00 local, across a DST change too).",
    ("OneOffFreeze", "from_"): "When it starts: a date and time, with an offset or read in "
    "`timezone`.",
    ("OneOffFreeze", "until"): "When it ends (same form as `from`).",
    # SignOffRequirement
    ("SignOffRequirement", "role"): "The sign-off's name as people read it (`QA Lead`); its "
    "key in gates is the slug (`qa-lead`).",
    ("SignOffRequirement", "by"): "Roles whose members may give this sign-off.",
    ("SignOffRequirement", "count"): "How many different people must give it (`2`: two "
    "members of the roles); the gate counts it done at that number.",
    ("SignOffRequirement", "valid_for"): "How long a signature holds (`4h`): older ones no "
    "longer count when deploying starts, and the role signs again. No expiry if absent.",
    # Gates and Gate
    ("Gates", "deploy"): "What must be in before deploying starts.",
    ("Gates", "complete"): "What must be in before the deploy completes.",
    ("Gate", "after"): "Section ids (slugs of titles) whose items must all be done or skipped.",
    ("Gate", "signoffs"): "Sign-off keys (`qa-lead`) that must be given.",
    # PagerDuty, Monitoring, Reminders
    ("PagerDuty", "routing_key_env"): "The variable holding the Events API v2 routing key.",
    ("Monitoring", "every"): "How often the probes run again.",
    ("Monitoring", "for_"): "How long after the deploy; the session completes at the end if "
    "nothing is missing.",
    ("Reminders", "after"): "Wait this long for missing sign-offs before the first nudge, "
    "and between nudges.",
    # Every probe kind
    ("ProbeBase", "timeout"): "The longest one run may take; past it, the probe fails.",
    ("ProbeBase", "severity"): "`critical`: a failure after deployment fails the session and "
    "pages; `warning`: it is shown only.",
    ("ProbeBase", "description"): "What the probe checks, in words; names it on the checklist.",
    # HTTP
    ("HttpProbe", "url"): "The http(s) URL to request.",
    ("HttpProbe", "method"): "The request method.",
    ("HttpProbe", "headers_from_env"): "Request headers, each value read from the named "
    "variable (`Authorization: API_TOKEN`).",
    ("HttpProbe", "expect_status"): "Status codes that pass.",
    ("HttpProbe", "body_contains"): "Text the body must contain.",
    ("HttpProbe", "json_path"): "A dotted path into a JSON body (`checks.db`, `items.0.ok`) "
    "that must exist.",
    ("HttpProbe", "json_value"): "The value expected at `json_path`.",
    ("HttpProbe", "max_latency"): "Slower answers fail.",
    ("HttpProbe", "follow_redirects"): "Follow redirects rather than judge the redirect itself.",
    ("HttpProbe", "verify_tls"): "Verify the server's certificate.",
    # TCP
    ("TcpProbe", "host"): "Host name or address to connect to.",
    ("TcpProbe", "port"): "TCP port.",
    ("TcpProbe", "send"): "A line to send once connected (`PING`; `\\r\\n` is added).",
    ("TcpProbe", "expect_banner"): "Text the reply must contain (`+PONG`, `220`); without it, "
    "connecting is the check.",
    # DNS
    ("DnsProbe", "name"): "The name to resolve.",
    ("DnsProbe", "record_type"): "The record type to ask for.",
    ("DnsProbe", "contains"): "Text one answer must contain.",
    ("DnsProbe", "nameserver"): "Ask this server (an IP address) instead of the system resolver.",
    ("DnsProbe", "port"): "The nameserver's port.",
    # TLS
    ("TlsProbe", "host"): "Host to connect to.",
    ("TlsProbe", "port"): "TLS port.",
    ("TlsProbe", "server_name"): "Name for SNI and the certificate check.",
    ("TlsProbe", "min_days"): "Days the certificate must stay valid.",
    ("TlsProbe", "ca_file"): "CA bundle to verify against instead of the system's.",
    # SQL
    ("SqlProbe", "url_env"): "The variable holding the database URL.",
    ("SqlProbe", "query"): "The query, run in a transaction that is rolled back.",
    ("SqlProbe", "expect"): "The value the first column of the first row must equal.",
    # Kubernetes probe
    ("KubernetesProbe", "check"): "`rollout`: the Deployment's rollout finished, as "
    "`kubectl rollout status` judges; `pods`: the pods matching `selector` are ready; "
    "`nodes`: every node is ready.",
    ("KubernetesProbe", "deployment"): "The Deployment (for `rollout`).",
    ("KubernetesProbe", "namespace"): "The namespace.",
    ("KubernetesProbe", "selector"): "Label selector of the pods (for `pods`): `app=api`.",
    ("KubernetesProbe", "context"): "Kubeconfig context (`KUBECONFIG`, else ~/.kube/config); "
    "without a kubeconfig, the pod's service account.",
    # AWS probe
    ("AwsProbe", "check"): "Which check: see the kinds above; each needs its own fields.",
    ("AwsProbe", "region"): "AWS region.",
    ("AwsProbe", "alarm_prefix"): "`cloudwatch_alarms`: no alarm named with this prefix is "
    "in ALARM.",
    ("AwsProbe", "queue_name"): "`sqs_depth`: the queue, by name.",
    ("AwsProbe", "queue_url"): "`sqs_depth`: the queue, by URL.",
    ("AwsProbe", "max_depth"): "`sqs_depth`: most messages that may wait.",
    ("AwsProbe", "table"): "`dynamodb_pitr`: the table whose point-in-time recovery must be on.",
    ("AwsProbe", "identity"): "`ses_identity`: the domain or address that must be verified.",
    ("AwsProbe", "function"): "`lambda_invoke`: the function to invoke.",
    ("AwsProbe", "payload"): "`lambda_invoke`: the JSON event to send.",
    # Command probe
    ("CommandProbe", "argv"): "The command and its arguments, run without a shell.",
    ("CommandProbe", "expect_exit"): "The exit status that passes.",
    ("CommandProbe", "output_pattern"): "A regular expression stdout and stderr must match.",
    ("CommandProbe", "env"): "Variables passed to the command; it sees no others (not even "
    "`PATH`).",
    # Metric probes (prometheus, cloudwatch_metric, datadog): what they share
    ("MetricProbe", "count"): "How many measurements to take (as Argo Rollouts counts "
    "them); `timeout` must cover `initial_delay` + `count` x `interval`.",
    ("MetricProbe", "interval"): "The time between measurements; needed when `count` is above 1.",
    ("MetricProbe", "failure_limit"): "How many measurements may fail; one more fails the "
    "probe at once.",
    ("MetricProbe", "inconclusive_limit"): "How many measurements may be inconclusive; "
    "one more makes the probe inconclusive (failed) at once.",
    ("MetricProbe", "initial_delay"): "How long to wait before the first measurement.",
    ("MetricProbe", "dashboard_url"): "A link the checklist item shows next to the result; "
    "may name `{{query}}` (URL-quoted), `{{service}}`, `{{version}}`, `{{environment}}`.",
    ("ComparingProbe", "query"): "The query; each series it returns is checked as `result`. "
    "May name `{{service}}`, `{{version}}`, `{{previous_version}}`, `{{environment}}`.",
    ("ComparingProbe", "baseline"): "Instead of `query`: the baseline's query (one series), "
    "read as `baseline`; e.g. the previous version's error rate.",
    ("ComparingProbe", "canary"): "With `baseline`: the canary's query (one series), read "
    'as `canary`; e.g. `errors{version="{{version}}"}`.',
    ("ComparingProbe", "condition"): "What each value must meet: with `query`, as `result` "
    "(`result < 0.01`, `0.9 <= result <= 1`; `result[0]` reads the list of all series' "
    "values); with `baseline` and `canary`, relating them (`canary <= baseline * 1.2`). "
    "No data and NaN are inconclusive.",
    # Prometheus probe
    ("PrometheusProbe", "url"): "The Prometheus server (`http://prometheus:9090`); the "
    "query goes to its HTTP API.",
    ("PrometheusProbe", "window"): "Query a range (`/api/v1/query_range`) over the last "
    "`window` rather than one instant.",
    ("PrometheusProbe", "step"): "With `window`: the range query's resolution.",
    ("PrometheusProbe", "reduce"): "With `window`: how a series' values become one value "
    "(`avg`, `max`, `min`, `last`).",
    ("PrometheusProbe", "bearer_token_env"): "The variable holding a bearer token to send.",
    ("PrometheusProbe", "basic_auth_env"): "The variable holding `user:password` for basic "
    "authentication.",
    ("PrometheusProbe", "verify_tls"): "Verify the server's certificate.",
    # CloudWatch metric probe
    ("CloudWatchMetricProbe", "namespace"): "The metric's namespace (`AWS/ApplicationELB`).",
    ("CloudWatchMetricProbe", "metric"): "The metric's name (`HTTPCode_Target_5XX_Count`).",
    ("CloudWatchMetricProbe", "dimensions"): "Dimension name to value; values may name "
    "`{{service}}`, `{{version}}`, `{{previous_version}}`, `{{environment}}`.",
    ("CloudWatchMetricProbe", "statistic"): "`Average`, `Sum`, `Minimum`, `Maximum`, "
    "`SampleCount` or a percentile (`p99`).",
    ("CloudWatchMetricProbe", "period"): "One datapoint per `period`: 1s, 5s, 10s, 30s or a "
    "multiple of 1m.",
    ("CloudWatchMetricProbe", "window"): "How far back each measurement looks.",
    ("CloudWatchMetricProbe", "reduce"): "How the window's datapoints become one value "
    "(`avg`, `max`, `min`, `last`).",
    ("CloudWatchMetricProbe", "region"): "AWS region.",
    ("CloudWatchMetricProbe", "condition"): "What the value must meet, as `result` "
    "(`result < 5`); no datapoint in the window is inconclusive.",
    # Datadog probe
    ("DatadogProbe", "site"): "The Datadog site (`datadoghq.eu`, `us5.datadoghq.com`).",
    ("DatadogProbe", "url"): "Instead of `site`: the API's base URL.",
    ("DatadogProbe", "api_key_env"): "The variable holding the API key.",
    ("DatadogProbe", "app_key_env"): "The variable holding the application key.",
    ("DatadogProbe", "window"): "How far back each measurement looks (`/api/v1/query`).",
    ("DatadogProbe", "reduce"): "How a series' points become one value "
    "(`avg`, `max`, `min`, `last`).",
    # HTTP probe conditions
    ("HttpProbe", "condition"): "Instead of `json_value`: a condition on the number (or list "
    "of numbers) at `json_path`, as `result` (`result < 0.01`, `result in [200, 204]`).",
    # Rollbacks
    ("KubernetesRollback", "deployment"): "The Deployment to undo (`kubectl rollout undo`).",
    ("KubernetesRollback", "namespace"): "Its namespace.",
    ("KubernetesRollback", "context"): "Kubeconfig context (`KUBECONFIG`, else "
    "~/.kube/config); without a kubeconfig, the pod's service account.",
    ("KubernetesRollback", "timeout"): "How long the rollout may take to finish.",
    ("EcsRollback", "cluster"): "The ECS cluster.",
    ("EcsRollback", "service"): "The service to point back at its previous task definition.",
    ("EcsRollback", "region"): "AWS region.",
    ("EcsRollback", "timeout"): "How long the service may take to become stable.",
    ("LambdaRollback", "function"): "The Lambda function.",
    ("LambdaRollback", "alias"): "The alias to point back at its previous version.",
    ("LambdaRollback", "region"): "AWS region.",
    ("LambdaRollback", "timeout"): "How long the change may take.",
    ("CommandRollback", "argv"): "The command and its arguments, run without a shell.",
    ("CommandRollback", "timeout"): "How long it may run.",
    ("CommandRollback", "env"): "Variables passed to the command; it sees no others.",
    # Checklist files
    ("Checklist", "title"): "The checklist's title in Slack.",
    ("Checklist", "sections"): "Sections, in order.",
    ("Checklist", "signoffs"): "The sign-offs the runbook asks for (role names, or `{role: ...}`); "
    "not items: `config check` warns about each one the environment's `signoffs` lacks.",
    ("ChecklistDocument", "suggested_probes"): "Probes an import suggests; inactive until "
    "`probes` in the config defines one of the same name.",
    ("ChecklistDocument", "suggested_rollback"): "Rollback targets an import suggests; "
    "inactive until copied under an environment's `rollback`.",
    ("SignOffLine", "role"): "The role, as the runbook names it (matched to the environment's "
    "sign-offs by its key: `QA Lead` -> `qa-lead`).",
    ("SignOffLine", "line"): "Where it is written (found by the loader; no need to set it).",
    ("ProbeSuggestion", "name"): "The name to define the probe under; items link it by it.",
    ("ProbeSuggestion", "line"): "The runbook line of the command.",
    ("ProbeSuggestion", "command"): "The command as the runbook writes it.",
    ("ProbeSuggestion", "fill_in"): "Shell variables the probe still holds: fill them in.",
    ("ProbeSuggestion", "probe"): "The [probe](#probes) to copy into the config.",
    ("RollbackSuggestion", "line"): "The runbook line of the command.",
    ("RollbackSuggestion", "rollback"): "The [rollback target](#rollback-targets) to copy.",
    ("Section", "title"): "The section's title.",
    ("Section", "id"): "Its id in gates (`Pre-Deployment` -> `pre-deployment`).",
    ("Section", "gate"): "What must be in before this section opens.",
    ("Section", "items"): "Items to tick, in order.",
    ("ChecklistItem", "text"): "What to do or check.",
    ("ChecklistItem", "id"): "Its id (`2.5.1`: section 2, item 5, child 1).",
    ("ChecklistItem", "probe"): "A probe (by name) that ticks this item when it passes.",
    ("ChecklistItem", "severity"): "`critical` or `warning`: how serious a failure of the "
    "linked probe is for this item, overriding the probe's own `severity` (if any item a "
    "probe ticks is critical, its failure is critical).",
    ("ChecklistItem", "children"): "Items under this one.",
}

DEFAULTS_IN_WORDS: dict[tuple[str, str], str] = {
    ("Environment", "incident_channel"): "the `channel`",
    ("Environment", "operators"): "the `starters`",
    ("Environment", "rollback_verify"): "`every 10s for 3m`",
    ("Gates", "deploy"): "every required sign-off",
    ("Gates", "complete"): "every required sign-off",
    ("TlsProbe", "server_name"): "the `host`",
    ("AwsProbe", "region"): "`AWS_REGION`, else `AWS_DEFAULT_REGION`",
    ("KubernetesProbe", "context"): "the current context, else in-cluster",
    ("KubernetesRollback", "context"): "the current context, else in-cluster",
    ("EcsRollback", "region"): "`AWS_REGION`, else `AWS_DEFAULT_REGION`",
    ("LambdaRollback", "region"): "`AWS_REGION`, else `AWS_DEFAULT_REGION`",
    ("PrometheusProbe", "step"): "a thirtieth of the `window`, at least 1s",
    ("CloudWatchMetricProbe", "region"): "`AWS_REGION`, else `AWS_DEFAULT_REGION`",
    ("DatadogProbe", "url"): "`https://api.` + the `site`",
    ("Section", "id"): "the slug of the `title`",
    ("ChecklistItem", "id"): "its position (`2.5.1`)",
}
"""Defaults the schema cannot state as a value: taken from other keys, or found at run time."""
