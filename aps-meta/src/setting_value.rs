//! (being written) validation of a setting value against its declaration.
