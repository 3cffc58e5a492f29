//! The legacy loyalty service: SOAP 1.1 over HTTP, as older back-office systems speak it.
//!
//! Request body: a SOAP envelope whose body holds
//! `<GetLoyaltyBalance><CustomerId>C-1001</CustomerId></GetLoyaltyBalance>`.
//! The answer is a `GetLoyaltyBalanceResponse` with the points, their value and the tier;
//! errors are SOAP faults, which SOAP 1.1 sends with HTTP status 500 (`soap:Client` for a
//! bad request, so a caller can tell its own mistakes from the server's).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use quick_xml::events::Event;
use quick_xml::Reader;

use crate::routes::AcmeState;

/// 100 points are worth $5.
const CENTS_PER_POINT: i64 = 5;

pub(crate) async fn loyalty(State(state): State<AcmeState>, body: axum::body::Bytes) -> Response {
    let customer_id = match parse_request(&body) {
        Ok(id) => id,
        Err(problem) => return fault("soap:Client", &problem),
    };
    let found = state.with_data(|d| d.customers.get(&customer_id).map(|c| (c.loyalty_points, c.tier.clone()))).await;
    match found {
        Some((points, tier)) => xml_response(
            StatusCode::OK,
            &format!(
                "<GetLoyaltyBalanceResponse xmlns=\"urn:acme:loyalty\">\
                 <CustomerId>{}</CustomerId><Points>{points}</Points>\
                 <ValueCents>{}</ValueCents><Tier>{}</Tier></GetLoyaltyBalanceResponse>",
                escape(&customer_id),
                points * CENTS_PER_POINT,
                escape(&tier)
            ),
        ),
        None => fault("soap:Client", &format!("unknown customer {customer_id}")),
    }
}

/// Finds the `CustomerId` inside a `GetLoyaltyBalance` element, ignoring namespace prefixes.
fn parse_request(body: &[u8]) -> Result<String, String> {
    let mut reader = Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut buf = Vec::new();
    let mut saw_operation = false;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                let name = e.local_name().as_ref().to_vec();
                saw_operation |= name == b"GetLoyaltyBalance";
                path.push(name);
            }
            Ok(Event::End(_)) => {
                path.pop();
            }
            Ok(Event::Text(t)) if path.last().is_some_and(|n| n == b"CustomerId") && saw_operation => {
                let text = t.unescape().map_err(|e| format!("malformed XML: {e}"))?;
                let id = text.trim().to_owned();
                return if id.is_empty() { Err("CustomerId is empty".into()) } else { Ok(id) };
            }
            Ok(Event::Eof) => {
                return Err(if saw_operation {
                    "GetLoyaltyBalance needs a CustomerId".into()
                } else {
                    "expected a GetLoyaltyBalance request".into()
                })
            }
            Err(e) => return Err(format!("malformed XML: {e}")),
            Ok(_) => {}
        }
        buf.clear();
    }
}

fn fault(code: &str, message: &str) -> Response {
    xml_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!(
            "<soap:Fault><faultcode>{code}</faultcode><faultstring>{}</faultstring></soap:Fault>",
            escape(message)
        ),
    )
}

fn xml_response(status: StatusCode, body: &str) -> Response {
    let envelope = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>{body}</soap:Body></soap:Envelope>"
    );
    (status, [(header::CONTENT_TYPE, "text/xml; charset=utf-8")], envelope).into_response()
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::parse_request;

    #[test]
    fn customer_id_is_read_with_or_without_namespace_prefixes() {
        let prefixed = br#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a="urn:acme:loyalty">
            <soap:Body><a:GetLoyaltyBalance><a:CustomerId> C-1001 </a:CustomerId></a:GetLoyaltyBalance></soap:Body></soap:Envelope>"#;
        assert_eq!(parse_request(prefixed).unwrap(), "C-1001");
        let plain =
            b"<Envelope><Body><GetLoyaltyBalance><CustomerId>C-1002</CustomerId></GetLoyaltyBalance></Body></Envelope>";
        assert_eq!(parse_request(plain).unwrap(), "C-1002");
    }

    #[test]
    fn malformed_or_foreign_requests_are_refused() {
        assert!(parse_request(b"<Envelope><Body><Other/></Body></Envelope>").is_err());
        assert!(parse_request(b"<Envelope><Body><GetLoyaltyBalance></GetLoyaltyBalance></Body></Envelope>").is_err());
        assert!(parse_request(b"<unclosed").is_err());
        assert!(parse_request(b"not xml at all").is_err());
    }
}
