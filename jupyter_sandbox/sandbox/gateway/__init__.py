"""The egress gateway: domain allow lists, secrets a sandbox can use but never read, and a log of
where each sandbox's connections went.

- domains.py    parsing, normalising (IDNA) and matching names and `*.suffix` patterns
- proxy.py      the proxy itself (runs in its own process, see __main__.py and control.py)
- tls.py        the server name of a TLS ClientHello, read without decrypting
- authority.py  each sandbox's own CA and the leaves it signs for hosts that get a secret
- vault.py      the secrets, kept on the host (0600)
- state.py      what the manager and the gateway process share: peers, the gateway's record, the log
- settings.py   `c.EgressGateway.*`
"""
