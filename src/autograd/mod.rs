//! Reverse-mode automatic differentiation, for training adapters on a frozen backbone.
//!
//! A tensor made a `variable` (an adapter's weights) carries a `Node`. Every op whose inputs include a tracked
//! tensor gives its output a node that holds what the op's backward needs (`record`); `backward(loss)` then
//! walks those nodes from the loss back to the variables. Backbone weights are never variables, so no op ever
//! computes their gradient, and a forward over frozen inputs alone records nothing: inference pays nothing.
//! Activation gradients still flow through every frozen op that lies between the loss and a variable.
//!
//! Each op's backward lives beside its forward (`ops::<op>`), with a finite-difference test in float64.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The backward of one recorded op.
pub trait Backward: Send + Sync {
    /// The op's name, for errors.
    fn name(&self) -> &'static str;
    /// The op's tensor inputs, in the order `backward` returns their gradients.
    fn inputs(&self) -> Vec<&Tensor>;
    /// The inputs' gradients given the output's. An input that is not tracked gets `None`: its gradient is
    /// never computed (a frozen weight's gradient GEMM is skipped, not discarded).
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>>;
}

/// A tracked tensor's place in the graph: a variable (no backward) or the output of a recorded op.
pub struct Node {
    id: u64,
    grad_fn: Option<Box<dyn Backward>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Node {
    fn new(grad_fn: Option<Box<dyn Backward>>) -> Arc<Node> {
        Arc::new(Node { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), grad_fn })
    }

    fn inputs(&self) -> Vec<&Tensor> {
        self.grad_fn.as_ref().map(|f| f.inputs()).unwrap_or_default()
    }
}

impl Tensor {
    /// A new variable with these values: `backward` computes the gradient of a loss with respect to it.
    pub fn variable(&self) -> Tensor {
        self.detach().with_node(Node::new(None))
    }
}

/// `out`, tracked through `make()`'s backward when any of `inputs` is tracked; otherwise `out` unchanged and
/// `make` never called (nothing is kept for a frozen computation).
pub(crate) fn record<B: Backward + 'static>(out: Tensor, inputs: &[&Tensor], make: impl FnOnce() -> B) -> Tensor {
    if inputs.iter().any(|t| t.is_tracked()) {
        out.detach().with_node(Node::new(Some(Box::new(make()))))
    } else {
        out
    }
}

/// An error when any of `inputs` is tracked: for the ops with no backward yet, so that a gradient is never
/// dropped without a word.
pub(crate) fn untracked(op: &'static str, inputs: &[&Tensor]) -> Result<()> {
    if inputs.iter().any(|t| t.is_tracked()) {
        return Err(Error::invalid(op, "has no backward yet, and one of its inputs needs a gradient"));
    }
    Ok(())
}

/// The error of a backward that has no implementation for the tensor's device yet.
pub(crate) fn cpu_only(op: &'static str) -> Error {
    Error::invalid(op, "gradients are computed on the CPU only so far (train with --device cpu)")
}

/// The variables' gradients after `backward`.
#[derive(Debug)]
pub struct Gradients {
    by_node: HashMap<u64, Tensor>,
}

impl Gradients {
    /// d loss / d `variable`, or `None` when the loss does not depend on it.
    pub fn get(&self, variable: &Tensor) -> Option<&Tensor> {
        self.by_node.get(&variable.node()?.id)
    }
}

/// Gradients of the scalar `loss` with respect to every variable it depends on.
pub fn backward(loss: &Tensor) -> Result<Gradients> {
    if loss.numel() != 1 {
        return Err(Error::shape("backward", format!("the loss must be a scalar, got shape {:?}", loss.shape())));
    }
    backward_with(loss, &Tensor::from_vec(vec![1.0], loss.shape())?)
}

/// Gradients of Σ `output` ⊙ `grad` (a vector-Jacobian product): `backward` for a non-scalar output.
pub fn backward_with(output: &Tensor, grad: &Tensor) -> Result<Gradients> {
    let root = output.node().ok_or_else(|| Error::invalid("backward", "the output does not depend on any variable"))?;
    if grad.shape() != output.shape() {
        return Err(Error::shape("backward", format!("gradient {:?} for output {:?}", grad.shape(), output.shape())));
    }
    let mut grads = HashMap::from([(root.id, grad.detach())]);
    for node in outputs_before_inputs(root) {
        let Some(grad_fn) = &node.grad_fn else { continue }; // a variable: its gradient stays
        let Some(grad) = grads.remove(&node.id) else { continue };
        let input_grads = grad_fn.backward(&grad)?;
        for (input, g) in grad_fn.inputs().into_iter().zip(input_grads) {
            let (Some(input_node), Some(g)) = (input.node(), g) else { continue };
            if g.shape() != input.shape() {
                let why = format!("gradient {:?} for input {:?}", g.shape(), input.shape());
                return Err(Error::shape(grad_fn.name(), why));
            }
            accumulate(&mut grads, input_node.id, g)?;
        }
    }
    Ok(Gradients { by_node: grads })
}

fn accumulate(grads: &mut HashMap<u64, Tensor>, id: u64, g: Tensor) -> Result<()> {
    match grads.entry(id) {
        Entry::Vacant(e) => {
            e.insert(g);
        }
        Entry::Occupied(mut e) => {
            let sum = crate::ops::add(e.get(), &g)?;
            e.insert(sum);
        }
    }
    Ok(())
}

/// Every node reachable from `root`, each after all the nodes that use it (reverse post-order), so a node's
/// gradient is complete when it is reached.
fn outputs_before_inputs(root: &Arc<Node>) -> Vec<Arc<Node>> {
    let mut seen = std::collections::HashSet::from([root.id]);
    let mut post_order = Vec::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            post_order.push(node);
            continue;
        }
        stack.push((node.clone(), true));
        for input in node.inputs() {
            if let Some(n) = input.node() {
                if seen.insert(n.id) {
                    stack.push((n.clone(), false));
                }
            }
        }
    }
    post_order.reverse();
    post_order
}

/// `reshape` of a tracked tensor: the gradient takes the input's shape back.
pub(crate) struct Reshape {
    input: Tensor,
}

impl Reshape {
    pub(crate) fn of(input: &Tensor) -> Reshape {
        Reshape { input: input.clone() }
    }
}

impl Backward for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.input]
    }
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.reshape(self.input.shape())?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(values: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(values.to_vec(), shape).unwrap()
    }

    #[test]
    fn a_variable_used_twice_gets_both_gradients() {
        // y = reshape(a) + reshape(a) + b with b frozen: dy/da = 2·g, and b has no gradient.
        let a = t(&[1.0, -2.0, 3.5, 0.25], &[2, 2]).variable();
        let b = t(&[0.5, 0.5, 0.5, 0.5], &[4]);
        let flat = a.reshape(&[4]).unwrap();
        let y = crate::ops::add(&crate::ops::add(&flat, &flat).unwrap(), &b).unwrap();
        let g = t(&[1.0, 2.0, -3.0, 0.5], &[4]);
        let grads = backward_with(&y, &g).unwrap();
        let ga = grads.get(&a).unwrap();
        assert_eq!(ga.shape(), &[2, 2]);
        assert_eq!(ga.to_vec().unwrap(), vec![2.0, 4.0, -6.0, 1.0]);
        assert!(grads.get(&b).is_none());
        assert!(!b.is_tracked() && y.is_tracked());
    }

    #[test]
    fn an_op_without_a_backward_refuses_a_tracked_input() {
        let grid = t(&[1.0, 2.0, 3.0, 4.0], &[1, 2, 2]).variable();
        let err = crate::ops::interpolate_bicubic(&grid, 3, 3).unwrap_err().to_string();
        assert!(err.contains("interpolate_bicubic") && err.contains("no backward"), "{err}");
    }

    #[test]
    fn frozen_computations_record_nothing() {
        let x = t(&[1.0, 2.0], &[2]);
        let y = crate::ops::add(&x.reshape(&[1, 2]).unwrap(), &x.reshape(&[1, 2]).unwrap()).unwrap();
        assert!(!y.is_tracked());
        let err = backward(&y.reshape(&[2]).unwrap()).unwrap_err().to_string();
        assert!(err.contains("scalar"), "{err}");
        let err = backward(&t(&[1.0], &[1])).unwrap_err().to_string();
        assert!(err.contains("does not depend on any variable"), "{err}");
    }
}
