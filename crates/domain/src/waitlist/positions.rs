//! The position formula (seed 003): `position = original position − verified referrals × points
//! per referral`, clamped to at least 1; participants are then ranked by that score, ties broken
//! by signup order, so positions are 1, 2, 3… with no two alike. The position-worker computes
//! the same in SQL; this is the reference the tests and the benchmark's baseline use.

/// What a participant's position depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub original_position: i64,
    pub verified_referrals: i64,
}

/// The score a participant is ranked by.
pub fn score(standing: Standing, points_per_referral: i64) -> i64 {
    standing
        .original_position
        .saturating_sub(
            standing
                .verified_referrals
                .saturating_mul(points_per_referral),
        )
        .max(1)
}

/// The position of each participant, in input order.
pub fn positions(standings: &[Standing], points_per_referral: i64) -> Vec<i64> {
    let mut order: Vec<usize> = (0..standings.len()).collect();
    order.sort_by_key(|&i| {
        (
            score(standings[i], points_per_referral),
            standings[i].original_position,
        )
    });
    let mut positions = vec![0; standings.len()];
    for (rank, i) in order.into_iter().enumerate() {
        positions[i] = i64::try_from(rank).unwrap_or(i64::MAX - 1) + 1;
    }
    positions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(original_position: i64, verified_referrals: i64) -> Standing {
        Standing {
            original_position,
            verified_referrals,
        }
    }

    #[test]
    fn referrals_move_people_up_and_ties_go_to_the_earlier_signup() {
        // Scores: 1, 2, 3−2=1 (tie with #1, signed up later), 4, 5−10 → clamped to 1.
        let standings = [
            standing(1, 0),
            standing(2, 0),
            standing(3, 1),
            standing(4, 0),
            standing(5, 5),
        ];
        assert_eq!(positions(&standings, 2), vec![1, 4, 2, 5, 3]);
    }

    #[test]
    fn without_referrals_positions_are_the_signup_order() {
        let standings: Vec<Standing> = (1..=5).map(|p| standing(p, 0)).collect();
        assert_eq!(positions(&standings, 3), vec![1, 2, 3, 4, 5]);
        assert_eq!(score(standing(2, 1), 0), 2);
    }
}
