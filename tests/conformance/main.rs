//! The conformance suite: `aps-controller conformance` through the real binary, against the
//! real database servers, on every fixture package. The lifecycle packages pass every step;
//! each package of fixtures/conformance/ fails at the step its README names (or passes with
//! the finding it names), and the three outputs (exit code, the JSON envelope, the JUnit XML)
//! say so. Nothing of a run is left behind. One test binary for the subject.

mod failing;
mod mistakes;
mod passing;
mod run;
