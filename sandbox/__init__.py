"""``deploybot sandbox``: the bot and everything it talks to, on loopback, with a web page.

Stand-ins for Slack (:mod:`.slack_api`, with the page on the same server), PagerDuty
(:mod:`.pagerduty`) and a Kubernetes API server (:mod:`.kube`) that the tests use as well.
"""
