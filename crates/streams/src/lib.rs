//! Kinesis Data Streams domain (being written).
