//! Contract: engine wire types.

/// Subjects of this context for the catalogue.
pub fn subjects() -> Vec<crate::catalogue::SubjectDoc> {
    vec![]
}
