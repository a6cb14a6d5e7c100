"""taskonomy-db: the Taskonomy method as a database-centric toolkit (`tdb`)."""

__version__ = "0.1.0"
