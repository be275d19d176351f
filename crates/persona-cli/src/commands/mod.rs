pub mod bench;
pub mod convert;
pub mod generate;
pub mod info;
pub mod score;
pub mod setup;
pub mod tokenize;
