//! Spend control: what requests cost (`prices`), the budgets that cap it (`budget`), and
//! what every key and team has spent so far (`book`).

pub mod book;
pub mod budget;
pub mod prices;

pub use book::{
    Amount, BudgetBook, BudgetStatus, Refusal, Reservation, Scope, SharedBudget, SpendLoad,
};
pub use budget::{Budget, BudgetSet, Period, Unit};
pub use prices::{Price, PriceTable};
