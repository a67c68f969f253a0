//! The models Kura validates ECR and ECR Public requests against (shapes
//! from botocore, see `scripts/gen-ecr-model.py`; the validator is
//! [`kura_aws::model`]).

use std::sync::OnceLock;

pub use kura_aws::model::{Model, Operation, Shape};

const ECR_MODEL_JSON: &str = include_str!("../model/ecr-shapes.json");

/// ECR's model, parsed once.
pub fn model() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| Model::from_json(ECR_MODEL_JSON).expect("the embedded ECR model is valid"))
}

pub use kura_public::public_model;

#[cfg(test)]
mod tests {

    use super::*;
    use serde_json::json;

    fn code(r: Result<(), crate::EcrError>) -> String {
        r.err().map(|e| e.kind.to_string()).unwrap_or_default()
    }

    #[test]
    fn model_loads_with_all_operations() {
        let m = model();
        assert_eq!(m.target_prefix, "AmazonEC2ContainerRegistry_V20150921");
        assert!(m.operations.len() >= 58, "{}", m.operations.len());
    }

    #[test]
    fn validates_like_ecr() {
        let m = model();
        assert!(m
            .validate("CreateRepository", &json!({"repositoryName": "team/app"}))
            .is_ok());
        assert_eq!(
            code(m.validate("CreateRepository", &json!({}))),
            "InvalidParameterException"
        );
        assert_eq!(
            code(m.validate("CreateRepository", &json!({"repositoryName": "A"}))),
            "InvalidParameterException"
        );
        assert_eq!(
            code(m.validate(
                "CreateRepository",
                &json!({"repositoryName": "ok", "imageTagMutability": "SOMETIMES"})
            )),
            "InvalidParameterException"
        );
        assert_eq!(
            code(m.validate("CreateRepository", &json!({"repositoryName": 5}))),
            "SerializationException"
        );
        assert_eq!(
            code(m.validate("DescribeRepositories", &json!({"maxResults": 0}))),
            "InvalidParameterException"
        );
        assert_eq!(
            code(m.validate("DescribeRepositories", &json!({"maxResults": 1001}))),
            "InvalidParameterException"
        );
        assert!(m.validate("DescribeRepositories", &json!({"maxResults": 1000})).is_ok());
        // Members the shape does not define are refused, at any depth.
        assert_eq!(
            code(m.validate("DescribeRepositories", &json!({"maxResults": 1000, "unknownField": 1}))),
            "SerializationException"
        );
        assert_eq!(
            code(m.validate("DeleteRegistryPolicy", &json!({"registryId": "210987654321"}))),
            "SerializationException"
        );
        assert_eq!(
            code(m.validate("DeleteRegistryPolicy", &json!({"registryId": null}))),
            "SerializationException"
        );
        assert_eq!(
            code(m.validate(
                "CreateRepository",
                &json!({"repositoryName": "ok", "encryptionConfiguration": {"encryptionType": "AES256", "x": 1}})
            )),
            "SerializationException"
        );
        assert!(m.input_has("DeleteRepository", "registryId"));
        assert!(!m.input_has("DeleteRegistryPolicy", "registryId"));
        assert!(!m.input_has("NoSuchOperation", "registryId"));
        assert_eq!(
            code(m.validate("DescribeRepositories", &json!({"registryId": "12"}))),
            "InvalidParameterException"
        );
        assert_eq!(code(m.validate("UploadLayerPart", &json!({"repositoryName": "ab", "uploadId": "x", "partFirstByte": 0, "partLastByte": 1, "layerPartBlob": "!!"}))), "SerializationException");
        assert_eq!(
            code(m.validate("NoSuchOperation", &json!({}))),
            "UnknownOperationException"
        );
    }
}
