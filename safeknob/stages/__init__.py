"""Pipeline stages: each is a plain ``run(config) -> Path`` over the experiment folder."""
