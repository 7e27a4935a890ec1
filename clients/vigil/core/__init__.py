"""The runtime Vigil's services share: serving, errors, queues, channel options, upload
protocol, metrics, proxy trust, backoff and masked service URLs. Depends only on third-party
libraries and the generated contracts, never on a service package."""
