//! The budget: what the components reserve at their replica counts must fit
//! in it; what they would reserve at their maximum counts should.

use super::Draft;
use crate::diagnostic::{Sink, Span};
use crate::model::{Budget, Resources};
use crate::units::{Bytes, MilliCpu};

/// One dimension of the budget, to write each check once for CPU and memory.
struct Dimension {
    /// How the total is named in a message: "CPU", "of memory".
    label: &'static str,
    get: fn(Resources) -> u64,
    show: fn(u64) -> String,
    /// The unit of the raw numbers, shown when two rounded values look alike.
    unit: &'static str,
    limit: u64,
}

pub(super) fn check(sink: &mut Sink, drafts: &[Draft], budget: Budget, at: &Span) {
    let counted: Vec<&Draft> = drafts
        .iter()
        .filter(|d| !d.appliance.is_builtin())
        .collect();
    let cpu = Dimension {
        label: "CPU",
        get: |r| r.cpu.0,
        show: |v| MilliCpu(v).to_string(),
        unit: "millicores",
        limit: budget.cpu.0,
    };
    let memory = Dimension {
        label: "of memory",
        get: |r| r.memory.0,
        show: |v| Bytes(v).to_string(),
        unit: "bytes",
        limit: budget.memory.0,
    };
    dimension(sink, &counted, at, &cpu);
    dimension(sink, &counted, at, &memory);
}

fn dimension(sink: &mut Sink, drafts: &[&Draft], at: &Span, dim: &Dimension) {
    let limit = dim.limit;
    // A single instance that does not fit can never run, whatever the
    // replica counts.
    let mut oversized = false;
    for d in drafts {
        let one = (dim.get)(d.resources);
        if one > limit {
            oversized = true;
            sink.error(
                d.resources_at.clone(),
                format!(
                    "one instance of component `{}` reserves {} {} but the budget is {}",
                    d.name,
                    dim.pair(one, limit),
                    dim.label,
                    dim.pair(limit, one)
                ),
            );
        }
    }
    let total = |count: fn(&Draft) -> u32| {
        drafts.iter().fold(0u64, |sum, d| {
            sum.saturating_add((dim.get)(d.resources).saturating_mul(u64::from(count(d))))
        })
    };
    let breakdown = |count: fn(&Draft) -> u32| {
        drafts
            .iter()
            .filter(|d| count(d) > 0)
            .map(|d| {
                format!(
                    "{}: {} × {}",
                    d.name,
                    count(d),
                    (dim.show)((dim.get)(d.resources))
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let now = total(|d| d.replicas.count);
    if now > limit {
        sink.error(
            at.clone(),
            format!(
                "components reserve {} {} at their replica counts but the budget is {} ({})",
                dim.pair(now, limit),
                dim.label,
                dim.pair(limit, now),
                breakdown(|d| d.replicas.count)
            ),
        );
        return;
    }
    let most = total(|d| d.replicas.max);
    // With an instance that can never fit, the warning would only repeat
    // the error.
    if most > limit && !oversized {
        sink.warning(
            at.clone(),
            format!(
                "components would reserve {} {} at their maximum replica counts but the budget is {} ({})",
                dim.pair(most, limit),
                dim.label,
                dim.pair(limit, most),
                breakdown(|d| d.replicas.max)
            ),
            "autoscaling will stop adding replicas when the budget is used up",
        );
    }
}

impl Dimension {
    /// `value` for a message next to `other`: when both print the same
    /// (memory is shown to one decimal), the exact number is added so the
    /// comparison still reads right.
    fn pair(&self, value: u64, other: u64) -> String {
        let (a, b) = ((self.show)(value), (self.show)(other));
        if a == b && value != other {
            format!("{a} ({value} {})", self.unit)
        } else {
            a
        }
    }
}
