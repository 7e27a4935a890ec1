"""Weapon incidents: the tracker that opens and closes them (``tracker``), their history
(``keeping``: the contract; ``store``: SQLite; ``postgres_store``: PostgreSQL, shared by
replicas), the clips recorded around them (``clips``) and the webhook that posts their events
(``webhook``)."""
