//! The active-learning runner: rounds of training an adapter on the labelled images, evaluating it, and
//! choosing the next images to label, for several arms (strategy + loss) and seeds, resumable at any point.

pub mod record;
pub mod report;

pub use record::RoundRecord;
