"""The CDK side of SageLab, laid out by unit (docs/decisions/0019):

    <unit>/construct.py    one construct per unit (front_door, model_endpoint, drift_check, ...)
    <unit>/runtime/        its Lambda or instance code, shipped as the unit's asset
    *_stack.py             the stacks: they compose units and wire grants between them
    app/                   the app plumbing: builder, cdk-nag, classroom stamping, quota check
    naming.py, lambda_runtime.py   what every unit shares (ARNs, the Lambda runtime and packaging)

Nothing here imports aws_cdk at package level: importing a unit's runtime (as `sagelab serve` and
`sagelab monitor` do) needs no CDK."""
