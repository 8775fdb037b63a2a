pub mod document;
pub mod node;
