"""Background work that any replica may do: the outbox worker, and the scheduler that one
leader per installation runs."""
