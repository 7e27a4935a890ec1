"""Weapon incidents: the tracker that opens and closes them (``tracker``), their SQLite history
(``store``), the clips recorded around them (``clips``) and the webhook that posts their events
(``webhook``)."""
