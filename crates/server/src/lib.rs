//! Front door (being written).
