"""The gateway's own HTTP/1.1 front end: its head reading (sans-IO) and its connections over real sockets."""
