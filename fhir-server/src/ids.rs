//! The small types a request's path is parsed into once, at the edge, so that the layers
//! below take them as checked: the tenant, the resource type and the logical id.

/// A tenant as the store knows it: the small integer (`tenants.tid`) that every row below
/// the tenants table carries in place of the tenant's name.
pub type TenantId = i64;
