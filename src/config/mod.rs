pub mod document;
pub mod node;
pub mod pins;
