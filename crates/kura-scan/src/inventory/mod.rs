//! Layer reading, the merged filesystem view and the package catalogers.
