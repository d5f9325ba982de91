//! Series assembly, between `store` and `route`: a series is ready once no
//! new instance has arrived for the configured stable time.
