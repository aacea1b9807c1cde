//! Your own logits in, indices out: `cargo run --release --example select -- logits.npy 100`
//! (a `.npy` or a safetensors file holding `logits` [N, C]).

use cpeal::select::{input::ArrayFile, select, Predictions, SelectionInput, Strategy};

fn main() -> cpeal::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "logits.npy".into());
    let budget = args.next().and_then(|k| k.parse().ok()).unwrap_or(10);
    let file = ArrayFile::open(path.as_ref(), "logits")?;
    let (n, c) = (file.shape()[0], file.shape().get(1).copied().unwrap_or(1));
    let input = SelectionInput::new(budget).with_predictions(Predictions::logits(file.matrix(n, c)?));
    for index in select(Strategy::Entropy, &input)? {
        println!("{index}");
    }
    Ok(())
}
