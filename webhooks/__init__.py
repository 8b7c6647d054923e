"""Call webhooks: the sender that posts the calls' events to the receivers CALL_WEBHOOKS and the agents name."""
