"""`pql notify`: delivers the PQL transitions topic to Slack incoming webhooks and generic JSON
webhooks (`streams.notify.service`), with routing rules (`routes`), the payloads and signatures
(`messages`), retries (`retry`) and a dead-letter topic. No Faust: a plain consumer per
destination, so one destination's outage never holds up another's deliveries."""
