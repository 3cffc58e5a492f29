//! The checksums and number plans that confirm a candidate: Luhn for payment cards, the
//! issuer ranges cards are given from, ISO 7064 mod 97 and the registered lengths for IBANs,
//! and the ranges the US never assigns as social security numbers.

/// The Luhn check over the digits of `digits` (other characters are skipped).
pub fn luhn(digits: &str) -> bool {
    let mut sum = 0u32;
    let mut count = 0usize;
    for (position, digit) in digits.bytes().rev().filter(u8::is_ascii_digit).enumerate() {
        let mut value = u32::from(digit - b'0');
        if position % 2 == 1 {
            value *= 2;
            if value > 9 {
                value -= 9;
            }
        }
        sum += value;
        count += 1;
    }
    count > 0 && sum % 10 == 0
}

/// Whether a number of `digits` length starting so could be a payment card: the issuer
/// ranges of the card networks (Visa, Mastercard, American Express, Diners, Discover, JCB,
/// UnionPay, Maestro and the older JCB ranges; JCB taken as all of 35), each with the lengths it issues.
pub fn card_issuer(number: &[u8]) -> bool {
    let len = number.len();
    let prefix =
        |n: usize| -> u32 { number.iter().take(n).fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0')) };
    match number.first() {
        Some(b'4') => matches!(len, 13 | 16 | 19),
        Some(b'5') => {
            let two = prefix(2);
            if (51..=55).contains(&two) {
                len == 16
            } else {
                (12..=19).contains(&len) // Maestro: 50, 56–59
            }
        }
        Some(b'2') => {
            let four = prefix(4);
            ((2221..=2720).contains(&four) && len == 16) || (four == 2131 && len == 15)
        }
        Some(b'3') => {
            let two = prefix(2);
            let three = prefix(3);
            (matches!(two, 34 | 37) && len == 15)
                || (((300..=305).contains(&three) || matches!(two, 36 | 38 | 39)) && (14..=19).contains(&len))
                || (two == 35 && (16..=19).contains(&len))
        }
        Some(b'6') => (12..=19).contains(&len), // Discover, UnionPay, Maestro
        Some(b'1') => prefix(4) == 1800 && len == 15,
        Some(b'0') => prefix(4) == 604 && (12..=19).contains(&len), // an early Maestro range
        _ => false,
    }
}

/// The ISO 7064 mod 97-10 check of an IBAN written without spaces, in either case.
pub fn iban_checksum(iban: &[u8]) -> bool {
    if iban.len() < 5 || !iban.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let rearranged = iban[4..].iter().chain(&iban[..4]);
    let mut remainder = 0u32;
    for &c in rearranged {
        let value = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            _ => u32::from(c.to_ascii_uppercase() - b'A') + 10,
        };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

/// The length of an IBAN of the country `code` (upper case), per the IBAN registry.
pub fn iban_length(code: [u8; 2]) -> Option<usize> {
    let length = match &code {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FO" | b"GL" | b"NL" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"XK" => 20,
        b"CH" | b"CR" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HU" | b"LB" | b"PL" | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        b"RU" => 33,
        _ => return None,
    };
    Some(length)
}

/// Whether area, group and serial form a number the US could have issued: never area 000,
/// 666 or 900–999, group 00 or serial 0000.
pub fn ssn_issuable(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_valid_numbers_and_refuses_one_digit_off() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(luhn("378282246310005"));
        assert!(!luhn("4111111111111112"));
        assert!(!luhn(""));
    }

    #[test]
    fn issuer_ranges_know_the_networks_lengths() {
        assert!(card_issuer(b"4111111111111111"));
        assert!(card_issuer(b"378282246310005"));
        assert!(!card_issuer(b"37828224631000"), "American Express is 15 digits");
        assert!(card_issuer(b"5555555555554444"));
        assert!(card_issuer(b"2223003122003222"));
        assert!(!card_issuer(b"9111111111111111"));
        assert!(!card_issuer(b"7111111111111111"));
    }

    #[test]
    fn iban_checksum_accepts_registered_examples_in_either_case() {
        assert!(iban_checksum(b"GB82WEST12345698765432"));
        assert!(iban_checksum(b"gb82west12345698765432"));
        assert!(iban_checksum(b"DE89370400440532013000"));
        assert!(!iban_checksum(b"GB82WEST12345698765433"));
        assert!(!iban_checksum(b"GB8"));
        assert_eq!(iban_length(*b"GB"), Some(22));
        assert_eq!(iban_length(*b"ZZ"), None);
    }

    #[test]
    fn never_issued_ssns_are_refused() {
        assert!(ssn_issuable(123, 45, 6789));
        assert!(!ssn_issuable(0, 45, 6789));
        assert!(!ssn_issuable(666, 45, 6789));
        assert!(!ssn_issuable(912, 45, 6789));
        assert!(!ssn_issuable(123, 0, 6789));
        assert!(!ssn_issuable(123, 45, 0));
    }
}
